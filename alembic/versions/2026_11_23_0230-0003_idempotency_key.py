"""idempotency key

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("idempotency_key", sa.String(200), nullable=True))
    op.add_column("tasks", sa.Column("request_hash", sa.String(64), nullable=True))
    op.create_unique_constraint(op.f("uq_tasks_idempotency_key"), "tasks", ["idempotency_key"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_tasks_idempotency_key"), "tasks", type_="unique")
    op.drop_column("tasks", "request_hash")
    op.drop_column("tasks", "idempotency_key")
