"""The surface: security headers, CORS, the OpenAPI document, what errors and
logs reveal, the metrics token, and the refusal to serve openly beyond loopback."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import Depends

from app.config import Settings
from auth.dependencies import require_metrics
from auth.tests.conftest import Keys, bearer, keys_settings
from main import create_app
from tasks.tests.fixtures import Stores, WorkerFactory, app_client, wait_for

ROOT = Path(__file__).resolve().parents[2]


async def test_answers_carry_security_headers(client: httpx.AsyncClient) -> None:
    data = await client.get("/health")
    page = await client.get("/docs")
    for answer in (data, page, await client.get("/tasks")):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
    assert data.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_the_open_routes_stay_open(client: httpx.AsyncClient) -> None:
    for path in ("/health", "/ready", "/docs", "/redoc", "/openapi.json"):
        assert (await client.get(path)).status_code == 200, path


async def test_cors_is_off_unless_origins_are_set(
    client: httpx.AsyncClient, database_url: str, stores: Stores, namespace: str
) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    closed = await client.options("/tasks", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    settings = keys_settings(database_url, stores, namespace, cors_origins="https://app.example")
    async with app_client(settings) as http:
        allowed = await http.options("/tasks", headers=preflight)
        other = await http.options(
            "/tasks", headers={**preflight, "Origin": "https://evil.example"}
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in other.headers


async def test_openapi_declares_the_schemes_and_scopes_and_holds_no_secret(
    client: httpx.AsyncClient, keys: Keys, settings: Settings
) -> None:
    token = await keys.token("a", "tasks:read")
    document = (await client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "tl_<id>_<secret>",
        "description": schemes["bearer"]["description"],
    }  # fmt: skip
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-API-Key"
    create = document["paths"]["/tasks"]["post"]
    assert {"bearer": ["tasks:write"]} in create["security"]
    assert {"401", "403"} <= set(create["responses"])
    assert {"apiKey": ["queues:read"]} in document["paths"]["/queues"]["get"]["security"]
    assert {"bearer": ["admin"]} in document["paths"]["/keys"]["post"]["security"]
    assert "security" not in document["paths"]["/health"]["get"]
    text = json.dumps(document)
    assert settings.auth_pepper is not None
    for secret in (settings.auth_pepper.get_secret_value(), token, token.split("_", 2)[2]):
        assert secret not in text


async def test_error_answers_never_repeat_the_key(client: httpx.AsyncClient, keys: Keys) -> None:
    key_id, token = await keys.make("a", "tasks:read")
    wrong = f"tl_{key_id}_{'z' * 43}"
    for headers in (bearer(wrong), {"X-API-Key": wrong}, bearer(token)):
        answer = await client.post("/tasks", json={"message": "x"}, headers=headers)
        assert answer.status_code in (401, 403)
        assert wrong not in answer.text and token not in answer.text
        assert key_id not in answer.text


async def test_payloads_results_and_keys_never_reach_the_logs(
    database_url: str, stores: Stores, namespace: str, db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture, start_worker: WorkerFactory,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    handlers = "tasks.tests.handlers,auth.tests.handlers"
    settings = keys_settings(database_url, stores, namespace, taskline_handlers=handlers)
    marker = "SECRET-PAYLOAD-7f3a"
    async with app_client(settings) as http:
        from app.lifespan import close_resources, open_resources

        resources = open_resources(settings)
        token = await Keys(resources).token("a", "tasks:write", "tasks:read")
        await close_resources(resources)
        await start_worker(taskline_handlers=handlers)
        ids = []
        for kind in ("echo", "leaky"):
            body = {"message": marker, "kind": kind, "payload": {"secret": marker}}
            answer = await http.post("/tasks", json=body, headers=bearer(token))
            ids.append(answer.json()["id"])
        await http.get("/tasks", headers=bearer(token + "x"))

        async def finished() -> bool:
            rows = await db.fetch(
                "SELECT status FROM tasks WHERE status IN ('completed', 'failed')"
            )
            return len(rows) == 2

        await wait_for(finished, what="both tasks to finish")
        leaky = await http.get(f"/tasks/{ids[1]}", headers=bearer(token))
    assert marker in leaky.json()["error"]  # the owner reads the error; the logs do not
    failures = [r for r in caplog.records if r.getMessage().startswith("failed")]
    assert {getattr(r, "kind", None) for r in failures} == {"leaky"}  # logged, its kind a field ...
    assert marker not in caplog.text  # ... without what the task carried
    assert token not in caplog.text


async def test_metrics_take_the_metrics_token_or_an_admin_key(
    database_url: str, stores: Stores, namespace: str
) -> None:
    metrics_token = "m" * 40
    settings = keys_settings(database_url, stores, namespace, metrics_token=metrics_token)
    app = create_app(settings)

    @app.get("/metrics-probe", dependencies=[Depends(require_metrics)])
    async def probe() -> dict[str, str]:
        return {"ok": "yes"}

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            from app.lifespan import close_resources, open_resources

            resources = open_resources(settings)
            keys = Keys(resources)
            admin, reader = await keys.token("ops", "admin"), await keys.token("a", "tasks:read")
            await close_resources(resources)
            answers = [
                (await http.get("/metrics-probe", headers=headers)).status_code
                for headers in (bearer(metrics_token), bearer(admin), bearer(reader),
                                bearer("m" * 39), {})
            ]  # fmt: skip
    assert answers == [200, 200, 403, 401, 401]


def _clean_env(**values: str) -> dict[str, str]:
    names = {"AUTH", "API_HOST", "ALLOW_UNAUTHENTICATED", "AUTH_PEPPER", "DATABASE_URL"}
    env = {key: value for key, value in os.environ.items() if key.upper() not in names}
    return {**env, **values}


@pytest.mark.parametrize("program", [["-c", "import main"], ["-m", "taskline", "api"]])
def test_serving_beyond_loopback_without_keys_stops_with_one_line(program: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, *program], cwd=ROOT, env=_clean_env(API_HOST="0.0.0.0"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    for name in ("API_HOST", "AUTH", "ALLOW_UNAUTHENTICATED"):
        assert name in lines[0]


async def test_allowed_to_serve_openly_beyond_loopback_it_warns(
    database_url: str, stores: Stores, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    from tasks.tests.fixtures import make_settings

    settings = make_settings(
        database_url, stores.redis_url, namespace, api_host="0.0.0.0", allow_unauthenticated=True
    )
    assert settings.unauthenticated_exposure() is None
    with caplog.at_level(logging.WARNING, logger="taskline.auth"):
        async with app_client(settings) as http:
            assert (await http.get("/tasks")).status_code == 200
    assert "AUTH=none" in caplog.text and "0.0.0.0" in caplog.text
