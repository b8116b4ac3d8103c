"""The `tasks` table (its status guarded by a CHECK constraint) and the
counters of its active rows."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"


TERMINAL_STATUSES = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELED, TaskStatus.EXPIRED}
)
_STATUS_VALUES = ", ".join(f"'{status.value}'" for status in TaskStatus)


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    kind: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    status: Mapped[str] = mapped_column(String(16), server_default=TaskStatus.PENDING.value)
    result: Mapped[Any | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    errors: Mapped[list[Any]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer, server_default="3")
    # Times POST /tasks/{id}/retry sent it round again; each `errors` entry records it.
    redrives: Mapped[int] = mapped_column(Integer, server_default="0")
    timeout_seconds: Mapped[float | None] = mapped_column(Float)
    run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker_id: Mapped[str | None] = mapped_column(String(100))
    queue: Mapped[str] = mapped_column(String(64), server_default="default")
    # 0 runs first. The order key is priority + fair_level (the owner's level
    # under FAIRNESS=levels when the task was created, else 0).
    priority: Mapped[int] = mapped_column(SmallInteger, server_default="5")
    fair_level: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    owner: Mapped[str | None] = mapped_column(String(200))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # Idempotency-Key of the POST that made it, unique while set; and a hash of that body.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # A step of a workflow (workflows/) names it; `inputs` holds what the steps
    # before it handed on: {"parent_result": ...} or {"group_results": [...]}.
    workflow_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    inputs: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # A message (kind `message`, topics/) moved to a dead queue: the queue it
    # left, so a redrive can send it back (migration 0010).
    dead_from: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUS_VALUES})", name="status_known"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        CheckConstraint("max_attempts BETWEEN 1 AND 100", name="max_attempts_range"),
        CheckConstraint("priority BETWEEN 0 AND 9", name="priority_range"),
        CheckConstraint("fair_level BETWEEN 0 AND 9", name="fair_level_range"),
        # Every claim and outcome writes a new version of the row, and with it an
        # entry in every index whose predicate the row meets, so the indexes are
        # few (migration 0013). Listing is keyset-paginated on the time-ordered
        # id, newest first; a kind or an owner without a status is listed status
        # by status along the same indexes (repository.list_tasks).
        Index("ix_tasks_status_id", "status", "id"),
        Index("ix_tasks_kind_status_id", "kind", "status", "id"),
        # A tenant's listing (API keys: each key sees its owner's tasks only).
        Index(
            "ix_tasks_owner_status_id",
            "owner",
            "status",
            "id",
            postgresql_where=text("owner IS NOT NULL"),
        ),
        Index(
            "ix_tasks_idempotency_key",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        # Small partial indexes keep the reconcile and the lease sweep cheap
        # however many finished rows the table holds.
        Index("ix_tasks_pending_run_at", "run_at", postgresql_where=text("status = 'pending'")),
        Index(
            "ix_tasks_pending_expires_at",
            "expires_at",
            postgresql_where=text("status = 'pending' AND expires_at IS NOT NULL"),
        ),
        # GET /queues counts active tasks per queue and priority from this alone;
        # the reconcile walks the pending tasks along it by a keyset cursor.
        Index(
            "ix_tasks_active_queue",
            "queue",
            "priority",
            "status",
            "run_at",
            "id",
            postgresql_where=text("status IN ('pending', 'processing')"),
        ),
        # GET /queues of one tenant counts its active tasks from this alone.
        # Tasks without an owner (all of them under AUTH=none) stay out of it:
        # every insert and claim of one would write an entry nothing reads.
        Index(
            "ix_tasks_active_owner",
            "owner",
            "queue",
            "priority",
            "status",
            "run_at",
            postgresql_where=text("status IN ('pending', 'processing') AND owner IS NOT NULL"),
        ),
        # Messages (topics/): a queue's messages by status, for its stats, its
        # deletion in batches and its redrive; and those dead-lettered from it.
        Index(
            "ix_tasks_message_queue",
            "queue",
            "status",
            "id",
            postgresql_where=text("kind = 'message'"),
        ),
        Index(
            "ix_tasks_dead_from",
            "dead_from",
            "status",
            "id",
            postgresql_where=text("dead_from IS NOT NULL AND kind = 'message'"),
        ),
        Index(
            "ix_tasks_processing_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'processing'"),
        ),
    )

    def log_fields(self) -> dict[str, Any]:
        """What log lines about it carry (app/logs.py); never payload or result."""
        return {
            "task_id": str(self.id), "kind": self.kind, "queue": self.queue,
            "attempt": self.attempts, "worker_id": self.worker_id,
        }  # fmt: skip


# Active tasks per queue, priority and status, for GET /queues. Kept by
# statement triggers (migration 0006): each statement appends its net change
# to task_count_changes, and the reconcile sweep folds those into task_counts.
# Row triggers add declared queues' dead letters, as status `dead` (0012).
task_counts = Table(
    "task_counts",
    Base.metadata,
    Column("queue", String(64), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint("queue", "priority", "status"),
)
task_count_changes = Table(
    "task_count_changes",
    Base.metadata,
    Column("queue", String(64), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("delta", BigInteger, nullable=False),
)
