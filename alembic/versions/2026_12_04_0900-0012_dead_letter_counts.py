"""dead letter counts: each declared queue's dead letters, kept by triggers

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 09:00:00

/metrics and the dashboard report every declared queue's dead letters. Counted
from the rows, that costs a scan of every dead letter per scrape (some 200 ms
for a million on a small machine), and a neglected dead queue is exactly when
the number matters. So triggers count them into the task counts of migration
0006, under the pseudo-status `dead`, in the queue they are dead letters of:

- a message `failed` in its queue (it had no dead queue), and
- a message `pending` in a dead queue, counted for the queue it left
  (`dead_from`), as GET /queues/{id}/stats has always counted them.

Row triggers whose WHEN clause only a message that is or was a dead letter
passes: PostgreSQL checks it without calling the function, so other rows (the
workers' claims and outcomes of every other task) pay nothing
(bench/count_trigger.py). The reconcile folds the changes with the others.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _dead(row: str) -> str:
    """Whether `row` (OLD or NEW) is a dead letter."""
    return (
        f"{row}.kind = 'message' AND ({row}.status = 'failed'"
        f" OR ({row}.status = 'pending' AND {row}.dead_from IS NOT NULL))"
    )


def _maybe(row: str) -> str:
    """A cheaper superset of _dead, for the WHEN clauses."""
    return f"{row}.kind = 'message' AND ({row}.status = 'failed' OR {row}.dead_from IS NOT NULL)"


def _change(row: str, delta: int) -> str:
    return f"""
        INSERT INTO task_count_changes (queue, priority, status, delta)
        VALUES (CASE WHEN {row}.status = 'failed' THEN {row}.queue ELSE {row}.dead_from END,
                {row}.priority, 'dead', {delta});"""


_FUNCTION = f"""
CREATE FUNCTION tasks_dead_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND {_dead("OLD")} THEN {_change("OLD", -1)}
    END IF;
    IF TG_OP <> 'DELETE' AND {_dead("NEW")} THEN {_change("NEW", 1)}
    END IF;
    RETURN NULL;
END
$$
"""

TRIGGERS = {
    "tasks_dead_count_insert": f"AFTER INSERT ON tasks FOR EACH ROW WHEN ({_maybe('NEW')})",
    "tasks_dead_count_update": (
        f"AFTER UPDATE ON tasks FOR EACH ROW WHEN (({_maybe('OLD')}) OR ({_maybe('NEW')}))"
    ),
    "tasks_dead_count_delete": f"AFTER DELETE ON tasks FOR EACH ROW WHEN ({_maybe('OLD')})",
}
CREATE = [
    _FUNCTION,
    *(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION tasks_dead_count()"
      for name, when in TRIGGERS.items()),
]  # fmt: skip
DROP = [*(f"DROP TRIGGER {name} ON tasks" for name in TRIGGERS), "DROP FUNCTION tasks_dead_count()"]

# The triggers' lock on `tasks` holds writers off until this commits, so the
# first count and the changes after it meet exactly. Each half reads a partial
# index (ix_tasks_kind_status_id, ix_tasks_dead_from).
_FIRST_COUNT = """
    INSERT INTO task_count_changes (queue, priority, status, delta)
    SELECT queue, priority, 'dead', count(*) FROM tasks
     WHERE kind = 'message' AND status = 'failed'
     GROUP BY 1, 2
    UNION ALL
    SELECT dead_from, priority, 'dead', count(*) FROM tasks
     WHERE dead_from IS NOT NULL AND kind = 'message' AND status = 'pending'
     GROUP BY 1, 2
"""


def upgrade() -> None:
    for statement in CREATE:
        op.execute(statement)
    op.execute(_FIRST_COUNT)


def downgrade() -> None:
    for statement in DROP:
        op.execute(statement)
    op.execute("DELETE FROM task_count_changes WHERE status = 'dead'")
    op.execute("DELETE FROM task_counts WHERE status = 'dead'")
