"""Ticks: every_seconds on the epoch grid, cron in a time zone across DST, catch-up plans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schedules.cron import Rule, cron_problem, next_after, plan, ticks_back, zone_problem

EVERY_SECOND = Rule(None, 1)
T0 = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_every_seconds_ticks_on_multiples_of_the_period() -> None:
    rule = Rule(None, 300)
    assert next_after(rule, T0 + timedelta(seconds=1)) == T0 + timedelta(minutes=5)
    assert next_after(rule, T0) == T0 + timedelta(minutes=5), "strictly after"
    back = ticks_back(rule, T0 + timedelta(minutes=7))
    assert [next(back), next(back)] == [T0 + timedelta(minutes=5), T0]


def test_cron_is_read_in_the_schedule_time_zone() -> None:
    rule = Rule("0 2 * * *", None, "Europe/Berlin")
    assert next_after(rule, T0) == utc("2026-12-03T02:00:00+01:00")
    back = ticks_back(rule, utc("2026-12-03T02:00:00+01:00"))
    assert next(back) == utc("2026-12-03T02:00:00+01:00"), "a tick at `upto` counts"


def test_daylight_saving_as_croniter_defines_it() -> None:
    """Berlin: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00 (what the README says)."""
    daily = Rule("30 2 * * *", None, "Europe/Berlin")
    spring = next_after(daily, utc("2026-03-28T12:00:00+01:00"))
    assert spring == utc("2026-03-29T03:00:00+02:00"), "a time in the gap runs after it"
    first = next_after(daily, utc("2026-10-24T12:00:00+02:00"))
    second = next_after(daily, first)
    assert (first, second) == (utc("2026-10-25T02:30:00+02:00"), utc("2026-10-25T02:30:00+01:00"))
    hourly = Rule("0 * * * *", None, "Europe/Berlin")
    after_one = next_after(hourly, utc("2026-03-29T01:00:00+01:00"))
    assert after_one == utc("2026-03-29T03:00:00+02:00"), "the missing hour has no tick"


@pytest.mark.parametrize(
    ("expression", "problem"),
    [("*/5 * * * *", None), ("@hourly", None), ("* * * * * *", "5 fields"),
     ("61 * * * *", "not a valid"), ("every minute", "not a valid")],
)  # fmt: skip
def test_cron_expressions_are_checked(expression: str, problem: str | None) -> None:
    found = cron_problem(expression)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_time_zones_are_checked() -> None:
    assert zone_problem("Europe/Berlin") is None
    assert zone_problem("Mars/Olympus") is not None
    assert zone_problem("../etc") is not None


def test_a_cron_that_never_fires_is_refused() -> None:
    with pytest.raises(ValueError, match="never fires"):
        next_after(Rule("0 0 31 2 *", None), T0)


def _plan(catch_up: str, *, missed_s: int, grace_s: float = 1.5, cap: int = 3) -> list[int]:
    """Ticks (as seconds after T0) a round at T0 + missed_s runs, due since T0 + 1."""
    found = plan(
        EVERY_SECOND,
        due_since=T0 + timedelta(seconds=1),
        now=T0 + timedelta(seconds=missed_s, milliseconds=500),
        catch_up=catch_up,
        grace_s=grace_s,
        cap=cap,
    )
    assert found.next_run_at == T0 + timedelta(seconds=missed_s + 1)
    return [int((tick - T0).total_seconds()) for tick in found.ticks]


def test_on_time_ticks_run_in_every_mode() -> None:
    for mode in ("none", "latest", "all"):
        assert _plan(mode, missed_s=1) == [1], mode


def test_catch_up_modes_after_a_gap() -> None:
    # Due since 1; at 10.5 the ticks 9 and 10 are within the 1.5 s grace.
    assert _plan("none", missed_s=10) == [9, 10]
    assert _plan("latest", missed_s=10) == [8, 9, 10]
    assert _plan("all", missed_s=10) == [6, 7, 8, 9, 10], "the newest `cap` missed ones"
    assert _plan("all", missed_s=10, cap=100) == list(range(1, 11))
