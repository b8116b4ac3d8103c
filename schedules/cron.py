"""When a schedule's ticks fall, and which of them a round of the tick loop runs.

Cron expressions are read by croniter in the schedule's time zone (zoneinfo),
so ticks follow that zone's wall clock across daylight-saving changes, as
croniter defines it: on the night the clocks go forward, a time inside the gap
runs at the first minute after it (a daily 02:30 runs at 03:00) unless that
instant is a tick anyway (an hourly schedule skips the missing hour); on the
night they go back, a time that occurs twice runs twice (02:30 summer time,
then 02:30 winter time). `every_seconds` ticks at whole multiples of the
period since the Unix epoch, unaffected by time zones.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Rule:
    cron: str | None
    every_seconds: int | None
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Plan:
    """The ticks to create tasks for now (oldest first), whether older ticks
    were skipped, and the first tick after now."""

    ticks: list[datetime]
    skipped: bool
    next_run_at: datetime


def cron_problem(expression: str) -> str | None:
    """None if croniter reads `expression` as 5 fields (or @hourly and the like)."""
    try:
        fields = croniter(expression).expanded
    except Exception as error:  # croniter raises several types; all mean "not valid"
        return f"cron {expression!r} is not a valid expression: {error}"
    if len(fields) != 5:
        return f"cron {expression!r} must have 5 fields (minute hour day month weekday)"
    return None


def zone_problem(name: str) -> str | None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"timezone {name!r} is not an IANA time zone name"
    return None


def next_after(rule: Rule, moment: datetime) -> datetime:
    """The first tick strictly after `moment` (UTC). Raises ValueError if the
    expression never fires (`0 0 31 2 *`)."""
    if rule.every_seconds is not None:
        period = rule.every_seconds
        return _epoch(math.floor(moment.timestamp() / period) * period + period)
    try:
        found = croniter(rule.cron, moment.astimezone(ZoneInfo(rule.timezone))).get_next(datetime)
    except Exception as error:
        raise ValueError(f"cron {rule.cron!r} never fires: {error}") from None
    return _utc(found)


def ticks_back(rule: Rule, upto: datetime) -> Iterator[datetime]:
    """Ticks at or before `upto` (UTC), newest first."""
    if rule.every_seconds is not None:
        period = rule.every_seconds
        seconds = math.floor(upto.timestamp() / period) * period
        while True:
            yield _epoch(seconds)
            seconds -= period
    start = (upto + TICK).astimezone(ZoneInfo(rule.timezone))
    ticks = croniter(rule.cron, start)
    while True:
        yield _utc(ticks.get_prev(datetime))


def plan(
    rule: Rule, *, due_since: datetime, now: datetime, catch_up: str, grace_s: float, cap: int
) -> Plan:
    """Which of the ticks in [due_since, now] to run.

    A tick found within `grace_s` of its time is on time and runs. Older ones
    were missed (no worker ran): `none` skips them, `latest` runs the newest of
    them, `all` runs the newest `cap` of them. At most `cap` on-time ticks run
    in one round, too, so a tiny period with a long grace cannot flood."""
    late_wanted = {"none": 0, "latest": 1}.get(catch_up, cap)
    on_time: list[datetime] = []
    late: list[datetime] = []
    skipped = False
    for tick in ticks_back(rule, now):
        if tick < due_since:
            break
        if tick >= now - timedelta(seconds=grace_s) and len(on_time) < cap:
            on_time.append(tick)
        elif len(late) < late_wanted:
            late.append(tick)
        else:
            skipped = True
            break
    return Plan(sorted(on_time + late), skipped, next_after(rule, now))


def _epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
