"""workflows: chains and groups of tasks; tasks.workflow_id and tasks.inputs

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 09:00:00

The two new columns of `tasks` are nullable without a default, so PostgreSQL
adds them without rewriting the table, and existing tasks are plain tasks.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    ]


def upgrade() -> None:
    op.add_column("tasks", sa.Column("workflow_id", sa.UUID(), nullable=True))
    op.add_column(
        "tasks", sa.Column("inputs", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.create_table(
        "workflows",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("status", sa.String(16), server_default="running", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("steps", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'completed', 'failed', 'canceled')",
            name=op.f("ck_workflows_status_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflows")),
    )
    op.create_index(
        "ix_workflows_finished_at",
        "workflows",
        ["finished_at"],
        postgresql_where=sa.text("finished_at IS NOT NULL"),
    )
    op.create_table(
        "workflow_steps",
        sa.Column("workflow_id", sa.UUID(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("is_group", sa.Boolean(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), server_default="waiting", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "remaining BETWEEN 0 AND size", name=op.f("ck_workflow_steps_remaining_range")
        ),
        sa.CheckConstraint(
            "status IN ('waiting', 'running', 'done', 'canceled')",
            name=op.f("ck_workflow_steps_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_workflow_steps_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workflow_id", "position", name=op.f("pk_workflow_steps")),
    )
    op.create_table(
        "workflow_members",
        sa.Column("workflow_id", sa.UUID(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("member", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=True),
        sa.Column("counted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id", "position"],
            ["workflow_steps.workflow_id", "workflow_steps.position"],
            name=op.f("fk_workflow_members_workflow_id_workflow_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "workflow_id", "position", "member", name=op.f("pk_workflow_members")
        ),
        sa.UniqueConstraint("task_id", name=op.f("uq_workflow_members_task_id")),
    )
    op.create_index(
        "ix_workflow_members_uncounted",
        "workflow_members",
        ["task_id"],
        postgresql_where=sa.text("task_id IS NOT NULL AND NOT counted"),
    )


def downgrade() -> None:
    op.drop_index("ix_workflow_members_uncounted", table_name="workflow_members")
    op.drop_table("workflow_members")
    op.drop_table("workflow_steps")
    op.drop_index("ix_workflows_finished_at", table_name="workflows")
    op.drop_table("workflows")
    op.drop_column("tasks", "inputs")
    op.drop_column("tasks", "workflow_id")
