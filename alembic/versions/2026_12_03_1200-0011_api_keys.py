"""api_keys, and the indexes that scope tasks to their owner

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 12:00:00

Access control: one row per API key (its secret only as a keyed hash), and
indexes so that a tenant's list of tasks and its queue counts read its own
rows only. The task indexes are built CONCURRENTLY, so a large table keeps
taking writes while they are built.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = "status IN ('pending', 'processing')"
TASK_INDEXES: list[tuple[str, list[str], str | None]] = [
    ("ix_tasks_owner_id", ["owner", "id"], None),
    ("ix_tasks_owner_status_id", ["owner", "status", "id"], None),
    ("ix_tasks_active_owner", ["owner", "queue", "priority", "status", "run_at"], ACTIVE),
]


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(32)), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.CheckConstraint("cardinality(scopes) > 0", name="ck_api_keys_scopes_not_empty"),
    )
    op.create_index("ix_api_keys_owner", "api_keys", ["owner"])
    with op.get_context().autocommit_block():
        for name, columns, where in TASK_INDEXES:
            op.create_index(
                name,
                "tasks",
                columns,
                postgresql_where=sa.text(where) if where else None,
                postgresql_concurrently=True,
                if_not_exists=True,
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, _, _ in TASK_INDEXES:
            op.drop_index(name, table_name="tasks", postgresql_concurrently=True, if_exists=True)
    op.drop_index("ix_api_keys_owner", table_name="api_keys")
    op.drop_table("api_keys")
