"""Time-ordered UUIDs (version 7, RFC 9562), so ids sort by creation time."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last = {"ms": 0, "seq": 0}


def uuid7() -> uuid.UUID:
    """48 bits of Unix milliseconds, a 12-bit counter that keeps ids from one
    process increasing within a millisecond, and 62 random bits."""
    return uuid7_many(1)[0]


def uuid7_many(count: int) -> list[uuid.UUID]:
    """`count` ids, increasing, as `count` calls of uuid7 would make them: one
    lock and one read of random bytes for all (a batch of 1,000 tasks)."""
    random = os.urandom(8 * count)
    ids = []
    with _lock:
        for index in range(count):
            ms, seq = _next_stamp()
            rand = int.from_bytes(random[8 * index : 8 * index + 8]) & ((1 << 62) - 1)
            value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand
            ids.append(uuid.UUID(int=value))
    return ids


def _next_stamp() -> tuple[int, int]:
    """(milliseconds, counter) of the next id; the caller holds the lock."""
    ms = time.time_ns() // 1_000_000
    if ms <= _last["ms"]:
        _last["seq"] += 1
        if _last["seq"] > 0xFFF:  # counter spent: borrow the next millisecond
            _last["ms"] += 1
            _last["seq"] = 0
        ms = _last["ms"]
    else:
        _last["ms"], _last["seq"] = ms, int.from_bytes(os.urandom(1)) & 0x3F
    return ms, _last["seq"]
