"""Jinja filters of the dashboard's templates: times, ages and JSON, readable."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment


def when(value: datetime | float | None) -> str:
    """A moment as `2026-12-02 08:21:19Z`; `-` for none."""
    if value is None:
        return "-"
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def age(seconds: float | None) -> str:
    """A duration as `4.2s`, `3m 05s`, `2h 10m`; `-` for none."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def since(value: datetime | float | None) -> str:
    """How long ago a moment was."""
    if value is None:
        return "-"
    at_s = value.timestamp() if isinstance(value, datetime) else value
    return age(max(0.0, time.time() - at_s)) + " ago"


def took(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    return age((end - start).total_seconds())


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def install(env: Environment) -> None:
    env.filters.update(when=when, age=age, since=since, took=took, pretty=pretty)
