"""`taskline gateway` and `python worker.py` as real processes, over real HTTP:
what the caller sends arrives unchanged, what the target answers comes back
unchanged (binary bodies included), and the target's docs pass straight through."""

from __future__ import annotations

import httpx

from gateway.tests.conftest import SpawnGateway, Upstream, assert_error, body_of, header
from tasks.tests.fixtures import WorkerProcess

BYTES = bytes(range(256)) * 3


async def test_requests_and_answers_cross_the_gateway_unchanged(
    spawn_gateway: SpawnGateway, spawn_worker: object, upstream: Upstream
) -> None:
    url = await spawn_gateway()
    worker: WorkerProcess = spawn_worker(GATEWAY_TARGET_BASE_URL=upstream.url)  # type: ignore[operator]
    sent_headers = [
        ("content-type", "application/octet-stream"),
        ("x-custom", 'v 1; q="x"'),
        ("x-multi", "first"),
        ("x-multi", "second"),
        ("authorization", "Bearer abc"),
        ("idempotency-key", "order-42"),
        # Hop-by-hop: for the gateway only, never forwarded.
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "private"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic c2VjcmV0"),
    ]
    path = "/echo/a%20b/%C3%A9?x=1&x=2&y=%2F&empty="
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.put(path, content=BYTES, headers=sent_headers)
        binary = await http.get("/binary")
    assert worker.process.poll() is None, worker.log()

    [record] = [r for r in await upstream.requests() if r["path"].startswith("/echo")]
    assert record["method"] == "PUT" and record["path"] == path
    assert body_of(record) == BYTES
    for name in ("content-type", "x-custom", "authorization", "idempotency-key"):
        assert header(record, name) == [dict(sent_headers)[name]], name
    assert header(record, "x-multi") == ["first", "second"]
    for name in ("x-hop", "keep-alive", "proxy-authorization"):
        assert header(record, name) == [], name
    assert header(record, "host") == [upstream.url.removeprefix("http://")]

    assert response.status_code == 201
    assert response.content == BYTES
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-upstream"] == "yes"
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    # The target's Server and Date headers, and no second pair of the gateway's own.
    [server] = response.headers.get_list("server")
    assert server.startswith("BaseHTTP/")
    assert len(response.headers.get_list("date")) == 1
    assert binary.status_code == 200 and binary.content == bytes(range(256)) * 4


async def test_the_targets_docs_pass_through_and_the_gateways_own_live_under_its_prefix(
    spawn_gateway: SpawnGateway, upstream: Upstream
) -> None:
    url = await spawn_gateway()  # and no worker at all: nothing here is queued
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        docs = await http.get("/docs")
        redoc = await http.get("/redoc")
        spec = await http.get("/openapi.json")
        health = await http.get("/health")
        slashed = await http.get("/health/")  # GATEWAY_NORMALIZE_PATHS: the same path
        own_spec = await http.get("/_gateway/openapi.json")
        own_docs = await http.get("/_gateway/docs")
        own_health = await http.get("/_gateway/health")
        queues = await http.get("/_gateway/queues")
        unknown = await http.get("/_gateway/nothing")
    assert docs.status_code == 200 and "<title>Upstream docs</title>" in docs.text
    assert redoc.status_code == 200 and "Upstream redoc" in redoc.text
    assert spec.json()["info"]["title"] == "upstream"
    assert health.json() == {"status": "up"}
    assert slashed.json() == {"path": "/health/"}  # sent as given
    assert [r["path"] for r in await upstream.requests()] == [
        "/docs", "/redoc", "/openapi.json", "/health", "/health/"
    ]  # fmt: skip
    assert own_spec.json()["info"]["title"] == "Taskline gateway"
    assert own_docs.status_code == 200 and "swagger" in own_docs.text.lower()
    assert own_health.json() == {"status": "ok"}
    assert queues.status_code == 200 and "queues" in queues.json()
    assert_error(unknown, 404)
