"""redrives, and the id in the active-queue index

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 08:00:00

`POST /tasks/{id}/retry` starts the attempt count over, so every entry of
`errors` also records the re-drive it belongs to: (redrive, attempt) is unique.

The reconcile walks the pending tasks in the order workers take them, by a
keyset cursor (queue, priority, status, run_at, id). With the id as the last
column of ix_tasks_active_queue that cursor is one index range; without it,
PostgreSQL scans and sorts the whole partial index for every chunk.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column("tasks", sa.Column("redrives", sa.Integer(), server_default="0", nullable=False))
    _active_queue_index(["queue", "priority", "status", "run_at", "id"])


def downgrade() -> None:
    _active_queue_index(["queue", "priority", "status", "run_at"])
    op.drop_column("tasks", "redrives")


def _active_queue_index(columns: list[str]) -> None:
    op.drop_index("ix_tasks_active_queue", table_name="tasks")
    op.create_index(
        "ix_tasks_active_queue",
        "tasks",
        columns,
        postgresql_where=sa.text("status IN ('pending', 'processing')"),
    )
