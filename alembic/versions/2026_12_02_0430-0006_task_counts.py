"""task counts: active tasks per queue, priority and status, kept by triggers

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 04:30:00

Counting a million active rows takes PostgreSQL a few hundred milliseconds,
too slow for GET /queues. Statement-level triggers append the net change of
every statement to `task_count_changes` (inserts only: writers never wait on
one another); the reconcile sweep folds the changes into `task_counts`.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE = "status IN ('pending', 'processing')"

_FUNCTION = f"""
CREATE FUNCTION tasks_count_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_count_changes (queue, priority, status, delta)
        SELECT queue, priority, status, count(*) FROM new_rows
         WHERE {_ACTIVE} GROUP BY 1, 2, 3;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO task_count_changes (queue, priority, status, delta)
        SELECT queue, priority, status, -count(*) FROM old_rows
         WHERE {_ACTIVE} GROUP BY 1, 2, 3;
    ELSE
        INSERT INTO task_count_changes (queue, priority, status, delta)
        SELECT queue, priority, status, sum(delta) FROM (
            SELECT queue, priority, status, 1 AS delta FROM new_rows WHERE {_ACTIVE}
            UNION ALL
            SELECT queue, priority, status, -1 FROM old_rows WHERE {_ACTIVE}
        ) AS moved
         GROUP BY 1, 2, 3 HAVING sum(delta) <> 0;
    END IF;
    RETURN NULL;
END
$$
"""

_TRIGGERS = {
    "tasks_count_insert": "AFTER INSERT ON tasks REFERENCING NEW TABLE AS new_rows",
    "tasks_count_update": (
        "AFTER UPDATE ON tasks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    ),
    "tasks_count_delete": "AFTER DELETE ON tasks REFERENCING OLD TABLE AS old_rows",
}


def upgrade() -> None:
    op.create_table(
        "task_counts",
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("queue", "priority", "status", name=op.f("pk_task_counts")),
    )
    op.create_table(
        "task_count_changes",
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
    )
    op.execute(_FUNCTION)
    for name, when in _TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} {when} FOR EACH STATEMENT"
            " EXECUTE FUNCTION tasks_count_changes()"
        )
    # The triggers' lock on `tasks` holds writers off until this commits, so
    # the first count and the changes after it meet exactly.
    op.execute(
        "INSERT INTO task_counts (queue, priority, status, count)"
        f" SELECT queue, priority, status, count(*) FROM tasks WHERE {_ACTIVE} GROUP BY 1, 2, 3"
    )


def downgrade() -> None:
    for name in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON tasks")
    op.execute("DROP FUNCTION tasks_count_changes()")
    op.drop_table("task_count_changes")
    op.drop_table("task_counts")
