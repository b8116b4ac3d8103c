"""SQL of what declared queues hold beyond the task counts of GET /queues: dead
letters, the oldest unacked message, the HTTP consumers holding leases. Read
per scrape of /metrics, so each statement costs the same with a million rows
(bench/topic_metrics.py)."""

from __future__ import annotations

from typing import Any

MAX_SUMMARIES = 500  # declared queues summed up per scrape or page, the first by id

# Dead letters per queue, from the trigger-kept counts (migration 0012): the
# folded counts and the changes not folded yet, aggregated once.
_DEAD = """
    SELECT queue, sum(n)::bigint AS dead FROM (
        SELECT queue, count AS n FROM task_counts WHERE status = 'dead'
        UNION ALL
        SELECT queue, delta FROM task_count_changes WHERE status = 'dead') AS c
     GROUP BY queue
"""


def _first_created(status: str) -> str:
    """The created_at of a queue's first message of `status` by id (ids are
    time-ordered: its oldest), read along ix_tasks_message_queue (queue, status,
    id). The range on queue is on purpose: with `queue = q.id` the planner may
    walk ix_tasks_status_id in id order instead, filtering out every other
    queue's messages, which takes seconds behind a big backlog elsewhere; ordered
    by (queue, id), only the queue's own index range gives that order."""
    return f"""(SELECT created_at FROM tasks
                 WHERE queue >= q.id AND queue <= q.id AND kind = 'message'
                   AND status = '{status}'
                 ORDER BY queue, id LIMIT 1)"""


_SUMMARIES = f"""
    WITH dead AS ({_DEAD})
    SELECT q.id AS queue, coalesce(d.dead, 0) AS dead,
           extract(epoch FROM now() - (
               SELECT min(created_at) FROM (
                   {_first_created("pending")}
                   UNION ALL
                   {_first_created("processing")}) AS oldest))::float8 AS oldest_unacked_age_s
      FROM queues q LEFT JOIN dead d ON d.queue = q.id
     WHERE q.deleting_at IS NULL AND ($2::text IS NULL OR q.id = $2)
     ORDER BY q.id
     LIMIT $1
"""


async def message_summaries(
    *, conn: Any, limit: int = MAX_SUMMARIES, queue_id: str | None = None
) -> list[Any]:
    """Each declared queue (the first `limit` by id, or only `queue_id`): `dead`,
    its dead letters (failed in it, or waiting in its dead queue), and
    `oldest_unacked_age_s`, the age of its oldest message not acked (None when
    it has none waiting or leased)."""
    return list(await conn.fetch(_SUMMARIES, limit, queue_id))


async def message_stats(*, conn: Any, queue_id: str) -> Any:
    """message_summaries of one queue; None if it is not declared (or being deleted)."""
    rows = await message_summaries(conn=conn, limit=1, queue_id=queue_id)
    return rows[0] if rows else None


# The processing messages of declared queues, along ix_tasks_message_queue:
# the cost is the number of leased messages, not of the active tasks.
_LEASING_CONSUMERS = """
    SELECT t.queue, substring(t.worker_id FROM '^http:(.*):[0-9a-f]{12}$') AS consumer,
           count(*) AS leased, max(t.started_at) AS last_lease_at
      FROM queues q
      JOIN tasks t ON t.queue = q.id AND t.kind = 'message' AND t.status = 'processing'
     WHERE q.deleting_at IS NULL AND t.worker_id LIKE 'http:%'
     GROUP BY 1, 2
     ORDER BY 1, 2
     LIMIT $1
"""


async def leasing_consumers(*, conn: Any, limit: int) -> list[Any]:
    """HTTP consumers holding leases now: per queue and consumer name, how many
    messages and when the latest was leased (the processing rows only)."""
    return list(await conn.fetch(_LEASING_CONSUMERS, limit))
