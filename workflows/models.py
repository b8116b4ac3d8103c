"""Workflows: a workflow is a list of steps; a step is one task or a group of
tasks run in parallel. Step n+1 starts when step n is over: a single task when
it completed (else the workflow fails and the rest is canceled), a group when
every member reached a final status, whatever it was (the fan-in).

`workflow_steps` holds one row per step with its fan-in counter (`remaining`);
`workflow_members` one row per task of a step: what to create, and the task
once created. Tasks of a workflow carry `tasks.workflow_id`.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKeyConstraint,
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


class WorkflowStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


class StepStatus(enum.StrEnum):
    WAITING = "waiting"  # its tasks are not created yet
    RUNNING = "running"  # its tasks exist; `remaining` of them are not final
    DONE = "done"
    CANCELED = "canceled"  # never started: an earlier step failed, or a cancel


class Workflow(Base):
    __tablename__ = "workflows"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), server_default=WorkflowStatus.RUNNING.value)
    error: Mapped[str | None] = mapped_column(Text)
    steps: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(
            "status IN ('running', 'completed', 'failed', 'canceled')", name="status_known"
        ),
        Index(
            "ix_workflows_finished_at",
            "finished_at",
            postgresql_where=text("finished_at IS NOT NULL"),
        ),
    )


class WorkflowStep(Base):
    __tablename__ = "workflow_steps"

    workflow_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1, 2, ...
    is_group: Mapped[bool] = mapped_column(Boolean)
    size: Mapped[int] = mapped_column(Integer)
    remaining: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), server_default=StepStatus.WAITING.value)
    error: Mapped[str | None] = mapped_column(Text)  # why it was canceled

    __table_args__ = (
        ForeignKeyConstraint(["workflow_id"], ["workflows.id"], ondelete="CASCADE"),
        CheckConstraint("remaining BETWEEN 0 AND size", name="remaining_range"),
        CheckConstraint(
            "status IN ('waiting', 'running', 'done', 'canceled')", name="status_known"
        ),
    )


class WorkflowMember(Base):
    __tablename__ = "workflow_members"

    workflow_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    member: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0, 1, ... within a group
    kind: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    queue: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(SmallInteger)
    max_attempts: Mapped[int] = mapped_column(Integer)
    timeout_seconds: Mapped[float] = mapped_column(Float)
    task_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), unique=True)
    # Counted in its step's fan-in once its task reached a final status.
    counted: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))

    __table_args__ = (
        ForeignKeyConstraint(
            ["workflow_id", "position"],
            ["workflow_steps.workflow_id", "workflow_steps.position"],
            ondelete="CASCADE",
        ),
        # The sweep's candidates: created tasks not counted yet.
        Index(
            "ix_workflow_members_uncounted",
            "task_id",
            postgresql_where=text("task_id IS NOT NULL AND NOT counted"),
        ),
    )
