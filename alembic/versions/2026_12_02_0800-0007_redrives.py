"""redrives: how many times a failed or canceled task was sent round again

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 08:00:00

`POST /tasks/{id}/retry` starts the attempt count over, so every entry of
`errors` also records the re-drive it belongs to: (redrive, attempt) is unique.
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


def downgrade() -> None:
    op.drop_column("tasks", "redrives")
