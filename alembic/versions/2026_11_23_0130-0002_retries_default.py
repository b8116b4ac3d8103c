"""three attempts by default

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 01:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("tasks", "max_attempts", server_default="3")


def downgrade() -> None:
    op.alter_column("tasks", "max_attempts", server_default="1")
