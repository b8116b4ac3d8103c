"""The `schedules` table: one row per schedule, with the next tick it owes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base

CATCH_UP_MODES = ("none", "latest", "all")


class Schedule(Base):
    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # Exactly one of the two: a 5-field cron expression read in `timezone`, or a
    # period in seconds (ticks at whole multiples of it since the Unix epoch).
    cron: Mapped[str | None] = mapped_column(String(200))
    every_seconds: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    priority: Mapped[int | None] = mapped_column(SmallInteger)
    queue: Mapped[str | None] = mapped_column(String(64))
    catch_up: Mapped[str] = mapped_column(String(8), server_default="latest")
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    declared: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # The first tick no task has been created for yet (the tick loop's claim).
    next_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_task_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("(cron IS NULL) <> (every_seconds IS NULL)", name="one_rule"),
        CheckConstraint("every_seconds >= 1", name="every_seconds_positive"),
        CheckConstraint("catch_up IN ('none', 'latest', 'all')", name="catch_up_known"),
        CheckConstraint("priority BETWEEN 0 AND 9", name="priority_range"),
        # The tick loop of every worker asks this small index what is due.
        Index("ix_schedules_due", "next_run_at", postgresql_where=text("enabled")),
    )
