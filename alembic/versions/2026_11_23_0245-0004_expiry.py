"""expiry: expires_at and the expired status

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 02:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = "'pending', 'processing', 'completed', 'failed', 'canceled'"
_AFTER = "'pending', 'processing', 'completed', 'failed', 'canceled', 'expired'"


def upgrade() -> None:
    op.add_column("tasks", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint(op.f("ck_tasks_status_known"), "tasks", type_="check")
    op.create_check_constraint(op.f("ck_tasks_status_known"), "tasks", f"status IN ({_AFTER})")
    op.create_index(
        "ix_tasks_pending_expires_at",
        "tasks",
        ["expires_at"],
        postgresql_where=sa.text("status = 'pending' AND expires_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_pending_expires_at", table_name="tasks")
    op.execute("UPDATE tasks SET status = 'canceled' WHERE status = 'expired'")
    op.drop_constraint(op.f("ck_tasks_status_known"), "tasks", type_="check")
    op.create_check_constraint(op.f("ck_tasks_status_known"), "tasks", f"status IN ({_BEFORE})")
    op.drop_column("tasks", "expires_at")
