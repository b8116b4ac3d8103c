"""All SQL of the task feature, as small keyword-only functions.

Every state change is one conditional UPDATE ... WHERE status = ... RETURNING:
the rows returned are the answer, so two processes can never both win.
The engine runs in autocommit (app/db.py): one statement, one round trip.
Worker statements use asyncpg's `$n` parameters (see driver_connection).
"""

from tasks.repository.api import (
    cancel_pending,
    get_task,
    list_tasks,
    owner_queue_counts,
    release_expired_key,
    request_cancel,
    requeue_finished,
    tasks_by_idempotency_key,
    tasks_by_ids,
)
from tasks.repository.claims import (
    claim,
    claim_kinds,
    claim_limited,
    extend_leases,
    finish,
    release,
)
from tasks.repository.inserts import COPY_FROM, Meanwhile, copy_slices, insert_tasks
from tasks.repository.rows import (
    ClaimedTask,
    HeldConnection,
    Outcome,
    Recorded,
    Renewal,
    bell_of,
    bell_of_row,
    driver_connection,
)
from tasks.repository.sweeps import (
    QUEUE_COUNTS,
    PendingChunk,
    PendingCursor,
    expire_ids,
    expire_overdue,
    fold_count_changes,
    pending_chunk,
    purge_finished,
    queue_counts,
    recover_expired,
)

__all__ = [
    "COPY_FROM",
    "QUEUE_COUNTS",
    "ClaimedTask",
    "HeldConnection",
    "Meanwhile",
    "Outcome",
    "PendingChunk",
    "PendingCursor",
    "Recorded",
    "Renewal",
    "bell_of",
    "bell_of_row",
    "cancel_pending",
    "claim",
    "claim_kinds",
    "claim_limited",
    "copy_slices",
    "driver_connection",
    "expire_ids",
    "expire_overdue",
    "extend_leases",
    "finish",
    "fold_count_changes",
    "get_task",
    "insert_tasks",
    "list_tasks",
    "owner_queue_counts",
    "pending_chunk",
    "purge_finished",
    "queue_counts",
    "recover_expired",
    "release",
    "release_expired_key",
    "request_cancel",
    "requeue_finished",
    "tasks_by_idempotency_key",
    "tasks_by_ids",
]
