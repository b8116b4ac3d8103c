"""A per-process cache of key lookups, dropped entry by entry when a key is
revoked anywhere (auth/keyring.py listens on Redis for that).

An entry lives `ttl_s` while the listener hears Redis; when it has not heard it
for a second (Redis down, a partition), `degraded_ttl_s` (at most a second)
bounds how long a revoked key can still be taken from the cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

CACHE_TTL_S = 10.0
DEGRADED_TTL_S = 1.0
LIVE_WINDOW_S = 1.0  # the listener is taken as live this long after it last heard Redis


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What a request needs of a key, without the ORM object."""

    id: str
    owner: str
    scopes: frozenset[str]
    secret_hash: str
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCache:
    def __init__(
        self,
        *,
        ttl_s: float = CACHE_TTL_S,
        degraded_ttl_s: float = DEGRADED_TTL_S,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.degraded_ttl_s = min(degraded_ttl_s, ttl_s)
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, KeyRecord | None]] = {}
        self._live_until = 0.0
        # Bumped by every invalidation: a lookup that began before one may have
        # read the old row, so its result is not kept.
        self.epoch = 0

    def get(self, key_id: str) -> tuple[bool, KeyRecord | None]:
        """(found, record); a found None means "no such key" (cached too)."""
        entry = self._entries.get(key_id)
        if entry is None:
            return False, None
        now = self._clock()
        ttl_s = self.ttl_s if now < self._live_until else self.degraded_ttl_s
        if now - entry[0] >= ttl_s:
            del self._entries[key_id]
            return False, None
        return True, entry[1]

    def put(self, key_id: str, record: KeyRecord | None, *, epoch: int) -> None:
        """Keep a lookup that began at `epoch`, unless an invalidation came since."""
        if epoch != self.epoch:
            return
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[key_id] = (self._clock(), record)

    def invalidate(self, key_id: str) -> None:
        self.epoch += 1
        self._entries.pop(key_id, None)

    def clear(self) -> None:
        self.epoch += 1
        self._entries.clear()

    def heard(self) -> None:
        """The listener heard Redis just now (a message or a pong)."""
        self._live_until = self._clock() + LIVE_WINDOW_S

    def lost(self) -> None:
        """The listener lost Redis: entries fall back to the degraded TTL at once."""
        self._live_until = 0.0

    @property
    def live(self) -> bool:
        return self._clock() < self._live_until
