"""Taskline on a Redis Cluster (REDIS_CLUSTER=true): three Valkey masters, the
queues' keys on different nodes, the API and workers doing everything they do
on one Redis; then one node restarts empty and everything recovers by itself."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from app.config import Settings
from app.lifespan import Resources
from app.redis import Keys
from tasks import tally
from tasks.doorbell import Bell, Doorbell
from tasks.tests.cluster import ClusterNode, ValkeyCluster
from tasks.tests.fixtures import (
    WorkerFactory,
    app_client,
    delete_namespace,
    make_settings,
    plain_dsn,
    wait_for,
    wait_status,
)
from tasks.tests.test_events import sse, take
from tasks.tests.test_worker import executions, max_overlap

SpawnApi = Callable[..., Awaitable[str]]


def queue_per_node(cluster: ValkeyCluster) -> list[str]:
    """Three queue names whose keys live on three different nodes, the one that
    holds the fleet-wide keys (`{g}`) first."""
    keys = Keys("any")
    fleet = cluster.node_of(keys.events)
    nodes = [fleet, *(node for node in cluster.nodes if node is not fleet)]
    candidates = [(f"q{n}", cluster.node_of(keys.ready(f"q{n}"))) for n in range(30)]
    return [next(name for name, held_by in candidates if held_by is node) for node in nodes]


@pytest.fixture
async def settings(
    database_url: str, valkey_cluster: ValkeyCluster, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Settings]:
    """This module's tests run on the cluster, their keys in a namespace of their own."""
    monkeypatch.setenv("TASKLINE_TEST_RECORD_DSN", plain_dsn(database_url))
    namespace = f"test:{uuid.uuid4().hex[:12]}"
    yield make_settings(
        database_url, valkey_cluster.url, namespace,
        worker_queues=",".join(queue_per_node(valkey_cluster)),
    )  # fmt: skip
    await delete_namespace(valkey_cluster.url, namespace)


async def post(http: httpx.AsyncClient, **fields: Any) -> str:
    body = {"message": "m", "kind": "record", **fields}
    response = await http.post("/tasks", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def keys_on(node: ClusterNode, namespace: str) -> set[str]:
    """The keys of a namespace this node holds (SCAN sees one node only)."""
    client = redis.Redis(host="127.0.0.1", port=node.port, decode_responses=True)
    try:
        return set(client.scan_iter(match=f"{namespace}:*"))
    finally:
        client.close()


def blocked_clients(node: ClusterNode) -> int:
    client = redis.Redis(host="127.0.0.1", port=node.port, decode_responses=True)
    try:
        return int(client.info("clients")["blocked_clients"])
    finally:
        client.close()


async def test_a_pop_over_nodes_takes_one_queue_and_puts_back_what_the_other_took(
    settings: Settings, valkey_cluster: ValkeyCluster, resources: Resources
) -> None:
    doorbell = Doorbell(resources)
    first, second, _ = settings.queues
    nodes = [valkey_cluster.node_of(resources.keys.ready(q)) for q in (first, second)]
    popping = asyncio.create_task(doorbell.pop([first, second], count=5, timeout_s=20))

    async def both_wait() -> bool:
        return all(blocked_clients(node) >= 1 for node in nodes)

    await wait_for(both_wait, what="a blocking pop on each queue's node")
    bells = [Bell(uuid.uuid4(), second, 0, 1.0), Bell(uuid.uuid4(), first, 3, 2.0)]
    await doorbell.ring(bells)  # both queues at once: both pops answer
    popped = await popping
    assert len(popped) == 1 and popped[0].id in {bell.id for bell in bells}
    other = next(bell for bell in bells if bell.id != popped[0].id)

    async def put_back() -> bool:
        ready = await resources.redis.zrange(resources.keys.ready(other.queue), 0, -1,
                                             withscores=True)  # fmt: skip
        return [(member, float(score)) for member, score in ready] == [
            (str(other.id), doorbell.score(other))
        ]

    await wait_for(put_back, what="the other pop's id back at its place")


async def test_queues_live_on_different_nodes_and_run_in_order(
    settings: Settings,
    valkey_cluster: ValkeyCluster,
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    start_worker: WorkerFactory,
) -> None:
    first, second, third = settings.queues
    keys = Keys(settings.redis_queue_name)
    late = [await post(client, queue=third, priority=0) for _ in range(2)]
    mid = [await post(client, queue=second, priority=p) for p in (9, 0)]
    urgent = [await post(client, queue=first, priority=p) for p in (5, 0)]
    nodes = [valkey_cluster.node_of(keys.ready(queue)) for queue in settings.queues]
    assert len({node.port for node in nodes}) == 3  # each queue on a node of its own
    for node, queue in zip(nodes, settings.queues, strict=True):
        assert keys.ready(queue) in keys_on(node, settings.redis_queue_name)
    assert {keys.events, keys.queues} <= keys_on(nodes[0], settings.redis_queue_name)

    await start_worker(worker_queue_maxsize=1, reconcile_interval_s=3600)  # no re-ring
    await wait_status(db, [*late, *mid, *urgent], "completed")
    # The first queue that has ids wins; within a queue, priority, then arrival.
    order = [str(row["task_id"]) for row in await executions(db)]
    assert order == [urgent[1], urgent[0], mid[1], mid[0], *late]


async def test_delays_waits_and_cancels(
    settings: Settings, client: httpx.AsyncClient, db: asyncpg.Connection,
    start_worker: WorkerFactory,
) -> None:  # fmt: skip
    first, second, third = settings.queues
    # Leases of a minute: only the announcement (pub/sub) can cancel within seconds.
    await start_worker(worker_lease_s=60, reconcile_interval_s=3600)
    delayed = [await post(client, queue=queue, delay_seconds=0.5) for queue in (first, third)]
    response = await client.get(f"/tasks/{delayed[1]}", params={"wait": 20}, timeout=30)
    assert response.json()["status"] == "completed"  # promoted, run, and the waiter woken
    await wait_status(db, delayed, "completed")

    later = await post(client, queue=second, delay_seconds=60)
    running = await post(client, queue=second, payload={"seconds": 30})
    await wait_for(lambda: _started(db, running), what="the long task to start")
    for task_id in (later, running):
        assert (await client.patch(f"/tasks/{task_id}", json={"status": "canceled"})).is_success
    await wait_status(db, [later, running], "canceled", timeout_s=10)


async def _started(db: asyncpg.Connection, task_id: str) -> bool:
    count = await db.fetchval("SELECT count(*) FROM executions WHERE task_id = $1::uuid", task_id)
    return bool(count)


async def test_a_kind_limit_parks_and_unparks_across_queues(
    settings: Settings,
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    resources: Resources,
    start_worker: WorkerFactory,
) -> None:
    ids = [await post(client, queue=q, payload={"seconds": 0.2}) for q in settings.queues * 2]
    # Four slots, one for the kind: the first pop claims one and parks the other.
    await start_worker(
        kind_concurrency={"record": 1}, worker_queue_maxsize=4, reconcile_interval_s=3600
    )

    async def parked() -> bool:
        return int(await resources.redis.zcard(resources.keys.parked("record"))) > 0

    await wait_for(parked, what="a task parked for want of a slot")
    await wait_status(db, ids, "completed")  # each rung again in its queue as a slot frees
    assert max_overlap(await executions(db)) == 1


async def test_admission_counts_queues_buckets_and_windows_on_their_own_slots(
    settings: Settings,
) -> None:
    first, second, _ = settings.queues
    limited = settings.model_copy(
        update={"rate_limit": "3/m", "queue_max_pending": 2, "fairness": "levels"}
    )
    async with app_client(limited) as http:
        answers = [await http.post("/tasks", json={"message": "m", "queue": queue})
                   for queue in (first, first, first, second, second)]  # fmt: skip
    # 3 tokens; the queue holds 2, and a POST it refuses takes no token.
    assert [a.status_code for a in answers] == [201, 201, 503, 201, 429]
    # Fairness: the owner's second and third tasks had 1 and 2 before them (level 1).
    assert [a.json()["fair_level"] for a in answers if a.status_code == 201] == [0, 1, 1]


async def test_events_stream_from_a_real_api_process(
    settings: Settings, spawn_api: SpawnApi, start_worker: WorkerFactory
) -> None:
    url = await spawn_api()
    await start_worker()
    async with sse(url) as stream, httpx.AsyncClient(base_url=url) as http:
        task_id = await post(http, queue=settings.queues[2])
        found = await take(stream, 3)
    assert [(e["data"]["task_id"], e["data"]["event"]) for e in found] == [
        (task_id, "created"), (task_id, "started"), (task_id, "completed"),
    ]  # fmt: skip


async def test_a_node_restarts_empty_and_everything_recovers(
    settings: Settings,
    valkey_cluster: ValkeyCluster,
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    resources: Resources,
    start_worker: WorkerFactory,
) -> None:
    first = settings.queues[0]  # on the node that also holds the fleet-wide keys
    namespace, keys = settings.redis_queue_name, Keys(settings.redis_queue_name)
    await start_worker()
    # Delayed tasks wait in every queue's scheduled set while one node restarts.
    delayed = [await post(client, queue=queue, delay_seconds=3) for queue in settings.queues * 2]
    node = valkey_cluster.node_of(keys.scheduled(first))
    assert keys.scheduled(first) in keys_on(node, namespace)

    await asyncio.to_thread(node.kill)  # a crash; no replica takes over
    assert (await client.get("/ready")).status_code == 503  # every master must answer
    await asyncio.to_thread(node.start)  # same port, same nodes.conf, no data
    await asyncio.to_thread(valkey_cluster.wait_ok)
    assert keys.scheduled(first) not in keys_on(node, namespace)

    # The first queue's doorbells are gone: the reconcile rings them once due.
    await wait_status(db, delayed, "completed", timeout_s=60)
    assert (await tally.read(resources)).get(f"x|{tally.RERUNG}", 0) >= 2  # counted anew
    # The API, its event feed and the worker carry on by themselves.
    assert (await client.get("/ready")).status_code == 200
    fresh = [await post(client, queue=queue) for queue in settings.queues]
    for task_id in fresh:
        answer = await client.get(f"/tasks/{task_id}", params={"wait": 20}, timeout=30)
        assert answer.json()["status"] == "completed"
