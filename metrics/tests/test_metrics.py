"""GET /metrics on real stores: counters every process adds to, gauges read
from the trigger-kept counts and the workers' heartbeats."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from app.lifespan import Resources
from conftest import WorkerFactory
from tasks import repository, tally
from tasks.tests.fixtures import (
    Stores,
    app_client,
    free_port,
    make_settings,
    wait_for,
    wait_status,
)
from tasks.worker import maintenance

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def post(http: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await http.post("/tasks", json={"message": "m", **body})


async def test_task_events_histograms_and_workers(
    settings: Settings, start_full_worker: WorkerFactory, db: asyncpg.Connection
) -> None:
    async with app_client(settings) as http:
        ids = [(await post(http, kind="echo")).json()["id"] for _ in range(3)]
        boom = (await post(http, kind="boom", max_attempts=1)).json()["id"]
        worker = await start_full_worker()
        await wait_status(db, ids, "completed")
        await wait_status(db, [boom], "failed")

        async def counted() -> bool:  # a worker sends its histograms twice a second
            found = await scrape(http)
            return value(found, "taskline_task_duration_seconds_count", kind="boom") == 1 and (
                value(found, "taskline_workers") == 1
            )

        await wait_for(counted, what="the failure's duration and the worker in /metrics")
        found = await scrape(http)
    events = {"event": "created", "queue": "default", "kind": "echo"}
    assert value(found, "taskline_task_events_total", **events) == 3
    for event in ("started", "completed"):
        assert value(found, "taskline_task_events_total", **{**events, "event": event}) == 3
    assert value(found, "taskline_task_duration_seconds_count", kind="echo") == 3
    assert value(found, "taskline_task_duration_seconds_bucket", kind="echo", le="+Inf") == 3
    assert value(found, "taskline_task_duration_seconds_count", kind="boom") == 1
    assert value(found, "taskline_task_start_delay_seconds_count", queue="default") == 4
    assert value(found, "taskline_worker_slots", worker=worker.worker_id) == 10
    assert value(found, "taskline_worker_heartbeat_age_seconds", worker=worker.worker_id) >= 0
    for state in ("ready", "scheduled", "processing"):
        assert ("taskline_queue_tasks", frozenset({("queue", "default"), ("state", state)})) in (
            found
        )


async def test_queue_depth_and_oldest_age_come_from_the_counts(settings: Settings) -> None:
    async with app_client(settings) as http:
        for _ in range(2):
            await post(http, queue="batch")
        await post(http, queue="batch", delay_seconds=3600)
        await asyncio.sleep(0.05)  # an age to see: the oldest ready task has waited
        found = await scrape(http)
    assert value(found, "taskline_queue_tasks", queue="batch", state="ready") == 2
    assert value(found, "taskline_queue_tasks", queue="batch", state="scheduled") == 1
    assert value(found, "taskline_queue_oldest_ready_age_seconds", queue="batch") > 0


async def test_two_api_processes_report_the_same_numbers(settings: Settings) -> None:
    async with app_client(settings) as one, app_client(settings) as two:
        await post(one)
        await post(two)
        first, second = await scrape(one), await scrape(two)
    created = {"event": "created", "queue": "default", "kind": "echo"}
    assert value(first, "taskline_task_events_total", **created) == 2
    counters = {k: v for k, v in first.items() if k[0].endswith("_total")}
    assert counters == {k: v for k, v in second.items() if k[0].endswith("_total")}


async def test_admission_refusals_by_reason(settings: Settings) -> None:
    limited = settings.model_copy(update={"rate_limit": "2/m", "queue_max_pending": 1})
    async with app_client(limited) as http:
        answers = [(await post(http, queue=f"q{i}")).status_code for i in range(4)]

        async def counted() -> bool:  # the second refusal was known here: no round trip
            found = await scrape(http)
            return value(found, "taskline_admission_refusals_total", reason="rate_limit") == 2

        await wait_for(counted, what="both refusals counted")
    assert answers == [201, 201, 429, 429]
    async with app_client(settings.model_copy(update={"queue_max_pending": 1})) as http:
        assert [(await post(http)).status_code for _ in range(3)] == [201, 503, 503]

        async def full() -> bool:
            found = await scrape(http)
            return value(found, "taskline_admission_refusals_total", reason="queue_full") == 2

        await wait_for(full, what="both queue_full refusals counted")


async def test_rerung_doorbells_and_recovered_leases_are_counted(
    settings: Settings, resources: Resources, db: asyncpg.Connection
) -> None:
    async with app_client(settings.model_copy(update={"fault_skip_push": True})) as http:
        lost, held = [uuid.UUID((await post(http)).json()["id"]) for _ in range(2)]
    async with repository.driver_connection(resources.engine) as conn:
        await repository.claim(conn=conn, ids=[held], worker_id="gone", lease_s=60)
    await db.execute("UPDATE tasks SET updated_at = now() - interval '1 hour' WHERE id = $1", lost)
    await db.execute(
        "UPDATE tasks SET lease_expires_at = now() - interval '1 s' WHERE id = $1", held
    )
    await maintenance.reconcile_once(resources.engine, resources)
    async with app_client(settings) as http:
        found = await scrape(http)
    # The recovered task is rung by the recovery, not by the walk
    assert value(found, "taskline_lease_recoveries_total") == 1
    assert value(found, "taskline_reconcile_rerung_total") == 1
    retried = {"event": "retried", "queue": "default", "kind": "echo"}
    assert value(found, "taskline_task_events_total", **retried) == 1


async def test_schedules_and_dead_letters(settings: Settings) -> None:
    async with app_client(settings) as http:
        for schedule_id, enabled in (("a", True), ("b", False)):
            body = {"id": schedule_id, "kind": "echo", "every_seconds": 60, "enabled": enabled}
            assert (await http.post("/schedules", json=body)).status_code == 201
        assert (await http.post("/queues", json={"id": "inbox"})).status_code == 201
        found = await scrape(http)
    assert value(found, "taskline_schedules", state="enabled") == 1
    assert value(found, "taskline_schedules", state="disabled") == 1
    assert value(found, "taskline_schedules_overdue") == 0
    assert ("taskline_queue_dead_messages", frozenset({("queue", "inbox")})) in found


async def test_a_worker_leaves_the_list_when_it_stops(
    settings: Settings, start_full_worker: WorkerFactory, resources: Resources
) -> None:
    from tasks import presence

    worker = await start_full_worker()

    async def listed() -> bool:
        return [w.id for w in await presence.live_workers(resources)] == [worker.worker_id]

    await wait_for(listed, what="the worker's report")
    [report] = await presence.live_workers(resources)
    assert (report.slots_total, report.queues) == (10, ["default"])
    worker.request_stop()

    async def gone() -> bool:
        return await presence.live_workers(resources) == []

    await wait_for(gone, timeout_s=15, what="the report withdrawn")


async def test_metrics_answer_503_when_a_store_is_down(
    settings: Settings, namespace: str, stores: Stores
) -> None:
    redis_down = f"redis://127.0.0.1:{free_port()}/0"
    async with app_client(settings.model_copy(update={"redis_url": redis_down})) as http:
        response = await http.get("/metrics")
    assert response.status_code == 503 and "redis" in response.json()["detail"]
    down = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x"
    async with app_client(make_settings(down, redis_down, namespace)) as http:
        response = await http.get("/metrics")
    assert response.status_code == 503 and response.json()["detail"]


def test_histogram_buckets_are_sorted_and_bounded() -> None:
    assert list(tally.BUCKETS_S) == sorted(tally.BUCKETS_S)
