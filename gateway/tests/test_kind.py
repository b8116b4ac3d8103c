"""The `http` kind on its own: deny by default (422 at POST, never contacted),
the worker's own check before it sends, and the answer stored as the result."""

from __future__ import annotations

import base64
from typing import Any

import asyncpg
import httpx

from app.config import Settings
from gateway.tests.conftest import Upstream, assert_error
from tasks.tests.fixtures import WorkerFactory, app_client, wait_status


def http_task(**payload: Any) -> dict[str, Any]:
    return {"message": "call", "kind": "http", "payload": payload, "max_attempts": 3}


async def test_a_host_outside_http_allowed_hosts_is_422_and_never_contacted(
    settings: Settings, upstream: Upstream, start_full_worker: WorkerFactory
) -> None:
    port = upstream.url.rsplit(":", 1)[1]
    allowed = {"gateway_target_base_url": "", "http_allowed_hosts": f"127.0.0.1:{port}"}
    await start_full_worker(**allowed)
    refused = [
        f"http://localhost:{port}/x",  # the same upstream, by a name that is not allowed
        f"http://127.0.0.1:{int(port) + 1}/x",  # an allowed host, another port
        f"http://127.0.0.1:{port}@localhost:{port}/x",  # user info is not the host
        f"ftp://127.0.0.1:{port}/x",
    ]
    async with app_client(settings.model_copy(update=allowed)) as api:
        for url in refused:
            assert_error(await api.post("/tasks", json=http_task(url=url)), 422)
        assert_error(await api.post("/tasks", json=http_task(path="/x")), 422)  # no target
        assert_error(await api.post("/run/http", json={"url": refused[0]}), 422)
        step = {"kind": "http", "message": "s", "payload": {"url": refused[0]}}
        assert_error(await api.post("/workflows", json={"steps": [step]}), 422)
        assert await upstream.requests() == []

        done = await api.post("/run/http", json={"url": f"http://127.0.0.1:{port}/binary"})
        assert done.status_code == 200, done.text
        result = done.json()["result"]
        assert result["status"] == 200
        assert base64.b64decode(result["body_base64"]) == bytes(range(256)) * 4
        assert ["Content-Type", "application/octet-stream"] in result["headers"]


async def test_the_worker_checks_again_before_it_sends(
    settings: Settings, upstream: Upstream, start_full_worker: WorkerFactory, db: asyncpg.Connection
) -> None:
    port = upstream.url.rsplit(":", 1)[1]
    api_settings = {"gateway_target_base_url": "", "http_allowed_hosts": f"127.0.0.1:{port}"}
    async with app_client(settings.model_copy(update=api_settings)) as api:
        created = await api.post("/tasks", json=http_task(url=f"{upstream.url}/x"))
        assert created.status_code == 201, created.text
    await start_full_worker(gateway_target_base_url="", http_allowed_hosts="")
    task_id = created.json()["id"]
    await wait_status(db, [task_id], "failed")
    row = await db.fetchrow("SELECT attempts, error FROM tasks WHERE id = $1::uuid", task_id)
    assert row["attempts"] == 1 and "not sent" in row["error"]  # failed at once, no retry
    assert "HTTP_ALLOWED_HOSTS" in row["error"]
    assert await upstream.requests() == []


async def test_the_http_kind_sends_the_payload_and_stores_the_answer(
    client: httpx.AsyncClient, upstream: Upstream, start_full_worker: WorkerFactory
) -> None:
    await start_full_worker()
    body = {"payload": {
        "method": "POST", "path": "/echo?a=1", "body": "héllo",
        "headers": {"content-type": "text/plain; charset=utf-8", "x-trace": "t1"},
    }, "max_attempts": 1}  # fmt: skip
    done = await client.post("/run/http", json=body)
    assert done.status_code == 200, done.text
    result = done.json()["result"]
    assert result["status"] == 201
    assert base64.b64decode(result["body_base64"]).decode() == "héllo"
    [record] = await upstream.requests()
    assert record["method"] == "POST" and record["path"] == "/echo?a=1"
    assert ["x-trace", "t1"] in [[k.lower(), v] for k, v in record["headers"]]


async def test_a_body_over_the_cap_fails_the_task_without_a_retry(
    settings: Settings, upstream: Upstream, start_full_worker: WorkerFactory
) -> None:
    await start_full_worker(gateway_max_body_bytes=100)
    async with app_client(settings) as api:
        failed = await api.post("/run/http", json={"path": "/binary"})
    body = assert_error(failed, 502)
    assert "GATEWAY_MAX_BODY_BYTES" in body["detail"] and len(body["errors"]) == 1
    assert len(await upstream.requests()) == 1


async def test_a_worker_without_the_http_service_fails_the_task_at_once(
    client: httpx.AsyncClient, start_worker: WorkerFactory
) -> None:
    await start_worker()  # tasks.worker.main's worker: no extensions, so no client pool
    failed = await client.post("/run/http", json={"payload": {"path": "/x"}, "max_attempts": 3})
    body = assert_error(failed, 502)
    assert "no HTTP client" in body["detail"] and len(body["errors"]) == 1


async def test_an_answer_too_large_for_result_max_bytes_fails_without_a_retry(
    settings: Settings, upstream: Upstream, start_full_worker: WorkerFactory
) -> None:
    await start_full_worker(result_max_bytes=1000)  # 1 KiB of body is 1,368 as base64
    async with app_client(settings) as api:
        failed = await api.post("/run/http", json={"path": "/binary"})
        small = await api.post("/run/http", json={"path": "/missing"})
    body = assert_error(failed, 502)
    assert "RESULT_MAX_BYTES" in body["detail"] and len(body["errors"]) == 1
    assert small.status_code == 200 and small.json()["result"]["status"] == 404
    assert len(await upstream.requests()) == 2
