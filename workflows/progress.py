"""How a workflow moves on: the fan-in count, the next step's tasks, the end.

`Progress.advance` runs inside the transaction that recorded the final
outcomes of some tasks (the worker's recorder calls it through its FlowHook),
so the outcome and the next step commit together or not at all. The sweep
runs the same function for tasks that ended elsewhere (a cancel over the API,
an expiry, a worker lost with no attempts left).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from app.errors import is_store_error
from app.ids import uuid7
from app.lifespan import Resources
from app.loops import stop_if_canceled
from tasks import repository as task_repository
from tasks.doorbell import Bell, Doorbell
from tasks.submissions import NewTask
from tasks.worker.flows import TRANSIENT
from workflows import repository

log = logging.getLogger("taskline.workflows")

SWEEP_LIMIT = 1_000


def member_key(workflow_id: uuid.UUID, position: int, member: int) -> str:
    """Idempotency key of a step member's task: one task per member, ever.
    The spaces keep it apart from any Idempotency-Key header."""
    return f"workflow {workflow_id} {position} {member}"


def _inputs(previous: list[Any], was_group: bool) -> dict[str, Any]:
    if not was_group:
        return {"parent_result": previous[0]["result"]}
    return {
        "group_results": [
            {"task_id": str(m["task_id"]), "status": m["task_status"], "result": m["result"],
             "error": m["error"]}
            for m in previous
        ]
    }  # fmt: skip


async def start_step(
    conn: Any, workflow_id: uuid.UUID, position: int, inputs: dict[str, Any] | None
) -> list[Bell]:
    """Create the tasks of a step (once: the key is unique) and mark it running."""
    members = await repository.step_members(conn=conn, workflow_id=workflow_id, position=position)
    tasks = [
        NewTask(
            id=uuid7(), kind=m["kind"], message=m["message"], payload=m["payload"],
            max_attempts=m["max_attempts"], timeout_seconds=m["timeout_seconds"],
            queue=m["queue"], priority=m["priority"], workflow_id=workflow_id, inputs=inputs,
            idempotency_key=member_key(workflow_id, position, m["member"]),
        )
        for m in members
        if m["task_id"] is None
    ]  # fmt: skip
    rows = await task_repository.insert_tasks(conn=conn, tasks=tasks)
    created = {row["id"] for row in rows}
    numbers = [m["member"] for m in members if m["task_id"] is None]
    pairs = [(n, t.id) for n, t in zip(numbers, tasks, strict=True) if t.id in created]
    await repository.mark_started(
        conn=conn, workflow_id=workflow_id, position=position,
        members=[n for n, _ in pairs], task_ids=[i for _, i in pairs],
    )  # fmt: skip
    return [task_repository.bell_of_row(row) for row in rows]


async def _step_done(conn: Any, step: Any) -> list[Bell]:
    """A step's last member is final: fail the workflow, start the next step, or end."""
    workflow_id, position = step["workflow_id"], step["position"]
    if await repository.lock_workflow(conn=conn, workflow_id=workflow_id) != "running":
        return []  # canceled or ended meanwhile: nothing more starts
    members = await repository.step_members(conn=conn, workflow_id=workflow_id, position=position)
    if not step["is_group"] and members[0]["task_status"] != "completed":
        status, error = members[0]["task_status"], members[0]["error"]
        await repository.end_workflow(
            conn=conn, workflow_id=workflow_id, status="failed",
            error=f"step {position} {status}: {error or status}",
            reason=f"canceled: step {position} {status}",
        )  # fmt: skip
        return []
    if position == step["steps"]:
        await repository.end_workflow(
            conn=conn, workflow_id=workflow_id, status="completed", error=None, reason=None
        )
        return []
    return await start_step(
        conn, workflow_id, position + 1, _inputs(members, was_group=step["is_group"])
    )


class Progress:
    """The FlowHook the worker's recorder calls (see tasks/worker/hooks.py)."""

    async def advance(self, *, conn: Any, task_ids: list[uuid.UUID]) -> list[Bell]:
        counted = Counter(await repository.count_members(conn=conn, task_ids=task_ids))
        if not counted:
            return []
        keys = sorted(counted)
        done = await repository.fan_in(
            conn=conn,
            workflow_ids=[key[0] for key in keys],
            positions=[key[1] for key in keys],
            counts=[counted[key] for key in keys],
        )
        bells: list[Bell] = []
        for step in sorted(done, key=lambda row: (row["workflow_id"], row["position"])):
            bells += await _step_done(conn, step)
        return bells


async def sweep_once(resources: Resources, progress: Progress) -> int:
    """Move on the workflows of tasks that ended outside the recorder; delete
    finished workflows past RETENTION_DAYS. Returns how many tasks were counted."""
    bells: list[Bell] = []
    async with task_repository.driver_connection(resources.engine) as conn:
        ids = await repository.uncounted_final(conn=conn, limit=SWEEP_LIMIT)
        if ids:
            async with conn.transaction():
                bells = await progress.advance(conn=conn, task_ids=ids)
        days = resources.settings.retention_days
        if days > 0:
            older_than = datetime.now(UTC) - timedelta(days=days)
            await repository.purge_finished(conn=conn, older_than=older_than, limit=SWEEP_LIMIT)
    await Doorbell(resources).ring(bells)
    return len(ids)


async def sweep_loop(resources: Resources, progress: Progress) -> None:
    """One sweep per RECONCILE_INTERVAL_SECONDS across the fleet (a Redis lock)."""
    interval_s = resources.settings.reconcile_interval_s
    lock = resources.keys.workflow_lock
    while True:
        stop_if_canceled()
        try:
            if await resources.redis.set(lock, "1", nx=True, px=max(1, int(interval_s * 900))):
                await sweep_once(resources, progress)
        except TRANSIENT as error:
            log.info("workflow sweep: %s; trying again next round", error)
        except Exception as error:
            if not is_store_error(error):
                raise
            log.warning("workflow sweep failed (%s); trying again next round", error)
        await asyncio.sleep(interval_s)
