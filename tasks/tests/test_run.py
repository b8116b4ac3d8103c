"""POST /run/{kind}: a handler called through the queue in one request."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from app.config import Settings
from app.lifespan import Resources
from tasks.tests.fixtures import WorkerFactory, app_client, wait_for


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["detail"]
    return body


async def test_run_answers_200_with_the_result(
    client: httpx.AsyncClient, start_worker: WorkerFactory, db: asyncpg.Connection
) -> None:
    await start_worker()
    response = await client.post("/run/sleep", json={"seconds": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed" and body["result"] == {"slept": 0}
    # The envelope form, on the generic operation (echo declares no payload model).
    response = await client.post("/run/echo", json={"payload": {"a": 1}, "priority": 1})
    assert response.status_code == 200, response.text
    row = await db.fetchrow(
        "SELECT priority, payload FROM tasks WHERE id = $1::uuid", response.json()["task_id"]
    )
    assert row["priority"] == 1 and row["payload"] == '{"a": 1}'


async def test_run_answers_502_with_the_errors_after_the_attempts(
    client: httpx.AsyncClient, start_worker: WorkerFactory
) -> None:
    await start_worker()
    response = await client.post("/run/boom", json={"payload": {}, "max_attempts": 2})
    body = assert_error(response, 502)
    assert body["status"] == "failed"
    assert [error["attempt"] for error in body["errors"]] == [1, 2]


async def test_run_answers_504_when_the_wait_runs_out_and_the_task_goes_on(
    client: httpx.AsyncClient, start_worker: WorkerFactory
) -> None:
    await start_worker()
    response = await client.post("/run/sleep", params={"wait": 0.3}, json={"seconds": 1})
    body = assert_error(response, 504)
    assert response.headers["Location"] == f"/tasks/{body['task_id']}"
    later = await client.get(response.headers["Location"], params={"wait": 30})
    assert later.json()["status"] == "completed"


async def test_run_refuses_bad_input(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/run/nope", json={}), 404)
    assert_error(await client.post("/run/sleep", json={"seconds": -1}), 422)
    assert_error(await client.post("/run/sleep", json={"seconds": 1, "extra": 1}), 422)
    assert_error(await client.post("/run/echo", json={"payload": {}, "priority": 10}), 422)
    assert_error(await client.post("/run/sleep", params={"wait": 301}, json={"seconds": 0}), 422)


async def test_run_answers_503_over_queue_max_pending(settings: Settings) -> None:
    async with app_client(settings.model_copy(update={"queue_max_pending": 1})) as http:
        first = await http.post("/run/echo", params={"wait": 0.1}, json={})
        assert_error(first, 504)  # no worker: it waits in the queue
        refused = await http.post("/run/echo", params={"wait": 0.1}, json={})
        assert_error(refused, 503)
        assert refused.headers["Retry-After"] == "1"


async def test_run_answers_503_over_the_kind_backlog(
    settings: Settings, start_worker: WorkerFactory, resources: Resources
) -> None:
    limits = {"kind_concurrency": {"sleep": 1}, "kind_max_backlog": {"sleep": 1}}
    await start_worker(**limits)
    async with app_client(settings.model_copy(update=limits)) as http:
        sleep = {"seconds": 3}
        assert_error(await http.post("/run/sleep", params={"wait": 0.1}, json=sleep), 504)
        assert_error(await http.post("/run/sleep", params={"wait": 0.1}, json=sleep), 504)

        async def parked() -> bool:
            return int(await resources.redis.zcard(resources.keys.parked("sleep"))) == 1

        await wait_for(parked, what="the second sleep to wait for the slot")
        refused = await http.post("/run/sleep", params={"wait": 0.1}, json=sleep)
        assert "KIND_MAX_BACKLOG" in assert_error(refused, 503)["detail"]
        assert refused.headers["Retry-After"] == "1"
        other = await http.post("/run/echo", params={"wait": 30}, json={})
        assert other.status_code == 200, "a kind without a backlog limit still flows"


async def test_run_answers_429_over_the_rate_limit(settings: Settings) -> None:
    async with app_client(settings.model_copy(update={"rate_limit": "1/m"})) as http:
        assert_error(await http.post("/run/echo", params={"wait": 0.1}, json={}), 504)
        refused = await http.post("/run/echo", params={"wait": 0.1}, json={})
        assert_error(refused, 429)
        assert int(refused.headers["Retry-After"]) >= 1


async def test_openapi_has_one_run_operation_per_kind_with_a_payload_model(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    sleep = spec["paths"]["/run/sleep"]["post"]
    schema = sleep["requestBody"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/SleepPayload"} in schema["anyOf"]
    assert {"200", "429", "502", "503", "504"} <= set(sleep["responses"])
    assert "/run/{kind}" in spec["paths"] and "/run/echo" not in spec["paths"]
    # /run/sleep is the operation above, not the generic one with any body.
    [kind] = [p for p in spec["paths"]["/run/{kind}"]["post"]["parameters"] if p["name"] == "kind"]
    assert "sleep" in kind["schema"]["not"]["enum"] and "echo" not in kind["schema"]["not"]["enum"]
    assert "Location" in sleep["responses"]["504"]["headers"]
