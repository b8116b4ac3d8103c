"""scheduling: queue, priority, owner and fairness level

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Constant defaults: PostgreSQL adds these columns without rewriting the table.
    op.add_column(
        "tasks", sa.Column("queue", sa.String(64), server_default="default", nullable=False)
    )
    op.add_column(
        "tasks", sa.Column("priority", sa.SmallInteger(), server_default="5", nullable=False)
    )
    op.add_column(
        "tasks", sa.Column("fair_level", sa.SmallInteger(), server_default="0", nullable=False)
    )
    op.add_column("tasks", sa.Column("owner", sa.String(200), nullable=True))
    op.create_check_constraint(op.f("ck_tasks_priority_range"), "tasks", "priority BETWEEN 0 AND 9")
    op.create_check_constraint(
        op.f("ck_tasks_fair_level_range"), "tasks", "fair_level BETWEEN 0 AND 9"
    )
    op.create_index(
        "ix_tasks_active_queue",
        "tasks",
        ["queue", "priority", "status", "run_at"],
        postgresql_where=sa.text("status IN ('pending', 'processing')"),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_active_queue", table_name="tasks")
    op.drop_constraint(op.f("ck_tasks_fair_level_range"), "tasks", type_="check")
    op.drop_constraint(op.f("ck_tasks_priority_range"), "tasks", type_="check")
    for column in ("owner", "fair_level", "priority", "queue"):
        op.drop_column("tasks", column)
