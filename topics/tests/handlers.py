"""The `message` handler of the Python workers in these tests: it records each
delivery in the test's `deliveries` table, as the HTTP consumers do, and
fails when the data asks it to (`{"fail": true}`)."""

from __future__ import annotations

from typing import Any

from tasks.handlers import TaskContext, handler
from tasks.tests.handlers import _pool


@handler("message")
async def message(task: TaskContext) -> dict[str, Any]:
    pool = await _pool()
    await pool.execute(
        "INSERT INTO deliveries (message_id, attempt, consumer) VALUES ($1, $2, 'worker')",
        task.id,
        task.attempt,
    )
    await pool.execute(
        "UPDATE deliveries SET finished_at = clock_timestamp()"
        " WHERE message_id = $1 AND attempt = $2",
        task.id,
        task.attempt,
    )
    data = task.payload.get("data")
    if isinstance(data, dict) and data.get("fail"):
        raise RuntimeError("asked to fail")
    return {"data": data}
