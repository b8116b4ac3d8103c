"""Time-ordered UUIDs (version 7, RFC 9562), so ids sort by creation time.

They are made as asyncpg's own UUID (a uuid.UUID, written in C), the type of
every id read back from PostgreSQL: 0.2 µs to make against 1.2 for uuid.UUID,
0.08 µs to turn into text against 0.95 (the ring and the event of every new
task do), and asyncpg sends it without converting it. Each one is equal to,
hashes as and compares with the uuid.UUID of the same value.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

from asyncpg.pgproto.pgproto import UUID as _FastUUID

_lock = threading.Lock()
_last = {"ms": 0, "seq": 0}
_MS_MASK, _RAND_MASK = (1 << 48) - 1, (1 << 62) - 1
_VERSION, _VARIANT = 0x7 << 76, 0b10 << 62


def uuid7() -> uuid.UUID:
    """48 bits of Unix milliseconds, a 12-bit counter that keeps ids from one
    process increasing within a millisecond, and 62 random bits."""
    return uuid7_many(1)[0]


def uuid7_many(count: int) -> list[uuid.UUID]:
    """`count` ids, increasing, as `count` calls of uuid7 would make them: one
    lock and one read of random bytes for all (a batch of 1,000 tasks). The
    first takes the next stamp; the others follow it in the counter, borrowing
    the next millisecond when it is spent, as _next_stamp would."""
    if count <= 0:
        return []
    randoms = memoryview(os.urandom(8 * count)).cast("Q")  # random in any byte order
    with _lock:
        first_ms, first_seq = _next_stamp()
        last = first_seq + count - 1
        _last["ms"], _last["seq"] = first_ms + (last >> 12), last & 0xFFF
    ids: list[uuid.UUID] = []
    for offset, rand in enumerate(randoms):
        step = first_seq + offset
        ms, seq = first_ms + (step >> 12), step & 0xFFF
        value = (ms & _MS_MASK) << 80 | _VERSION | seq << 64 | _VARIANT | rand & _RAND_MASK
        ids.append(_FastUUID(value.to_bytes(16)))
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
