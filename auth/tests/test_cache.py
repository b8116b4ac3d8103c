"""The lookup cache: how long an entry lives with and without the Redis listener,
and a lookup that raced an invalidation is not kept."""

from __future__ import annotations

from auth.cache import KeyCache, KeyRecord

RECORD = KeyRecord("0123456789abcdef", "a", frozenset({"tasks:read"}), "h", None, None)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_the_ttl_while_the_listener_hears_redis() -> None:
    clock = Clock()
    cache = KeyCache(ttl_s=10, degraded_ttl_s=1, clock=clock)
    cache.put("k", RECORD, epoch=cache.epoch)
    for _ in range(9):
        clock.now += 1
        cache.heard()
        assert cache.get("k") == (True, RECORD)
    clock.now += 1.5
    cache.heard()
    assert cache.get("k") == (False, None)


def test_without_the_listener_an_entry_lives_one_second_at_most() -> None:
    clock = Clock()
    cache = KeyCache(ttl_s=10, degraded_ttl_s=1, clock=clock)
    cache.put("k", RECORD, epoch=cache.epoch)
    clock.now += 0.9
    assert cache.get("k") == (True, RECORD)
    clock.now += 0.2
    assert cache.get("k") == (False, None)


def test_the_listener_counts_as_lost_a_second_after_it_last_heard_redis() -> None:
    clock = Clock()
    cache = KeyCache(ttl_s=10, degraded_ttl_s=1, clock=clock)
    cache.heard()
    cache.put("k", RECORD, epoch=cache.epoch)
    clock.now += 0.9
    assert cache.live and cache.get("k")[0]
    clock.now += 0.3  # nothing heard for 1.2 s: the entry, 1.2 s old, is too old now
    assert not cache.live and cache.get("k") == (False, None)
    cache.heard()
    cache.put("k", RECORD, epoch=cache.epoch)
    cache.lost()
    clock.now += 1.0
    assert cache.get("k") == (False, None)


def test_invalidate_drops_the_entry_and_a_racing_lookup_is_not_kept() -> None:
    cache = KeyCache(clock=Clock())
    cache.heard()
    cache.put("k", RECORD, epoch=cache.epoch)
    began = cache.epoch  # a lookup starts reading the row ...
    cache.invalidate("k")  # ... the key is revoked meanwhile ...
    assert cache.get("k") == (False, None)
    cache.put("k", RECORD, epoch=began)  # ... and what it read is not kept
    assert cache.get("k") == (False, None)
    cache.put("k", None, epoch=cache.epoch)
    assert cache.get("k") == (True, None)  # "no such key" is cached too
    cache.clear()
    assert cache.get("k") == (False, None)
