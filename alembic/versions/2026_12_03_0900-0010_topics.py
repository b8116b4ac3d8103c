"""topics: topics, queues as resources, dead letters, receipt handle key

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 09:00:00

Messages are rows of `tasks` (kind `message`); this adds the resources around
them. A message whose last delivery fails moves to its queue's dead queue in
the same statement that failed it, whichever path failed it (a nack, an
expired lease recovered by the reconcile, a Python handler): a BEFORE UPDATE
trigger, fired only for messages turning `failed`, rewrites the row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DEAD_LETTER = """
CREATE FUNCTION messages_dead_letter() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    dead queues%ROWTYPE;
BEGIN
    -- FOR SHARE: a DELETE of the dead queue waits for this move to commit
    -- (and then deletes the message), or this sees the queue as being deleted.
    SELECT d.* INTO dead
      FROM queues q JOIN queues d ON d.id = q.dead_queue_id
     WHERE q.id = NEW.queue AND d.deleting_at IS NULL
       FOR SHARE OF d;
    IF NOT FOUND THEN
        RETURN NEW;  -- no dead queue: the message ends failed
    END IF;
    NEW.dead_from := NEW.queue;
    NEW.queue := dead.id;
    NEW.status := 'pending';
    NEW.attempts := 0;  -- a new round: (redrives, attempt) stays unique in `errors`
    NEW.redrives := OLD.redrives + 1;
    NEW.max_attempts := coalesce(dead.message_max_deliveries, 100);
    NEW.timeout_seconds := dead.ack_deadline_seconds;
    NEW.run_at := now();
    NEW.expires_at := now() + make_interval(secs => dead.message_retention_seconds);
    NEW.worker_id := NULL;
    NEW.lease_expires_at := NULL;
    NEW.started_at := NULL;
    NEW.finished_at := NULL;
    NEW.result := NULL;
    NEW.cancel_requested := false;
    NEW.updated_at := now();
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "topics",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topics")),
    )
    op.create_table(
        "queues",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("topic_id", sa.String(64), nullable=True),
        sa.Column("ack_deadline_seconds", sa.Integer(), server_default="30", nullable=False),
        sa.Column(
            "message_retention_seconds", sa.Integer(), server_default="604800", nullable=False
        ),
        sa.Column("message_max_deliveries", sa.SmallInteger(), nullable=True),
        sa.Column("dead_queue_id", sa.String(64), nullable=True),
        sa.Column(
            "message_filters",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("deleting_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "ack_deadline_seconds BETWEEN 1 AND 43200", name=op.f("ck_queues_ack_deadline_range")
        ),
        sa.CheckConstraint(
            "message_retention_seconds BETWEEN 1 AND 2678400",
            name=op.f("ck_queues_retention_range"),
        ),
        sa.CheckConstraint(
            "message_max_deliveries BETWEEN 1 AND 100", name=op.f("ck_queues_max_deliveries_range")
        ),
        sa.CheckConstraint("dead_queue_id <> id", name=op.f("ck_queues_dead_queue_not_itself")),
        sa.ForeignKeyConstraint(
            ["topic_id"], ["topics.id"], name=op.f("fk_queues_topic_id_topics")
        ),
        sa.ForeignKeyConstraint(
            ["dead_queue_id"],
            ["queues.id"],
            name=op.f("fk_queues_dead_queue_id_queues"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queues")),
    )
    op.create_index("ix_queues_topic_id", "queues", ["topic_id"])
    op.create_table(
        "receipt_keys",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_receipt_keys")),
    )
    # No default: PostgreSQL adds the column without rewriting the table.
    op.add_column("tasks", sa.Column("dead_from", sa.String(64), nullable=True))
    op.create_index(
        "ix_tasks_message_queue",
        "tasks",
        ["queue", "status", "id"],
        postgresql_where=sa.text("kind = 'message'"),
    )
    op.create_index(
        "ix_tasks_dead_from",
        "tasks",
        ["dead_from", "status", "id"],
        postgresql_where=sa.text("dead_from IS NOT NULL AND kind = 'message'"),
    )
    op.execute(_DEAD_LETTER)
    # The WHEN clause is checked without calling the function: other updates pay nothing.
    op.execute(
        "CREATE TRIGGER tasks_dead_letter BEFORE UPDATE OF status ON tasks FOR EACH ROW"
        " WHEN (NEW.status = 'failed' AND OLD.status <> 'failed' AND NEW.kind = 'message')"
        " EXECUTE FUNCTION messages_dead_letter()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER tasks_dead_letter ON tasks")
    op.execute("DROP FUNCTION messages_dead_letter()")
    op.drop_index("ix_tasks_dead_from", table_name="tasks")
    op.drop_index("ix_tasks_message_queue", table_name="tasks")
    op.drop_column("tasks", "dead_from")
    op.drop_table("receipt_keys")
    op.drop_index("ix_queues_topic_id", table_name="queues")
    op.drop_table("queues")
    op.drop_table("topics")
