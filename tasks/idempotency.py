"""Idempotency keys at creation: a task whose key was used within
IDEMPOTENCY_KEY_TTL_S answers the first task (same body and owner) or is
refused; the intake writes through store_tasks."""

from __future__ import annotations

from typing import Any

from tasks import repository
from tasks.exceptions import IdempotencyMismatch
from tasks.submissions import NewTask, Settled

IDEMPOTENCY_KEY_TTL_S = 24 * 3600


async def store_tasks(
    conn: Any,
    tasks: list[NewTask],
    settled: Settled,
    meanwhile: repository.Meanwhile | None = None,
) -> list[Any]:
    """Insert `tasks` and settle each one in `settled`: created, or its key's
    first task replayed (or refused); returns the rows created."""
    rows = await repository.insert_tasks(conn=conn, tasks=tasks, meanwhile=meanwhile)
    settled.update((row["id"], (row, True)) for row in rows)
    taken = [task for task in tasks if task.id not in settled]
    if taken:
        rows += await settle_taken_keys(conn, taken, settled)
    return rows


async def settle_taken_keys(conn: Any, taken: list[NewTask], settled: Settled) -> list[Any]:
    """Tasks whose Idempotency-Key was already used: the first task again when the
    body is the same, a refusal when it differs; an expired key is used anew.
    Returns the rows created here (they still need their doorbell)."""
    keys = [task.idempotency_key or "" for task in taken]
    existing = await repository.tasks_by_idempotency_key(
        conn=conn, keys=keys, key_ttl_s=IDEMPOTENCY_KEY_TTL_S
    )
    created = []
    for task, key in zip(taken, keys, strict=True):
        row = existing.get(key)
        if row is None or row["key_expired"]:
            await repository.release_expired_key(
                conn=conn, key=key, key_ttl_s=IDEMPOTENCY_KEY_TTL_S
            )
            fresh = await repository.insert_tasks(conn=conn, tasks=[task])
            if fresh:
                settled[task.id] = (fresh[0], True)
                created.append(fresh[0])
                continue
            found = await repository.tasks_by_idempotency_key(
                conn=conn, keys=[key], key_ttl_s=IDEMPOTENCY_KEY_TTL_S
            )
            row = found[key]
        # Keys are one namespace for every owner: another owner's task under the
        # same key is refused like another body, never handed to this caller.
        if row["request_hash"] != task.request_hash or row["owner"] != task.owner:
            settled[task.id] = IdempotencyMismatch(key)
        else:
            settled[task.id] = (row, False)
    return created
