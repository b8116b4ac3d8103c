"""Time-ordered ids: made one by one or many at once, they only ever increase."""

from __future__ import annotations

import time

from app.ids import uuid7, uuid7_many


def test_ids_made_many_at_once_increase_with_those_made_one_by_one() -> None:
    before = uuid7()
    many = uuid7_many(5000)  # more than the 4,096 a millisecond's counter holds
    after = uuid7()
    ids = [before, *many, after]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {one.version for one in ids} == {7} and {one.variant for one in ids} == {
        "specified in RFC 4122"
    }
    stamp_ms = int.from_bytes(after.bytes[:6])
    assert abs(stamp_ms - time.time() * 1000) < 60_000
    assert uuid7_many(0) == []
