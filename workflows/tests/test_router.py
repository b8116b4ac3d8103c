"""The workflows API: create, show, cancel; bad bodies and limits write nothing."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

import workflows.tests.handlers  # noqa: F401  (registers the test kinds)
from app.config import Settings
from tasks.tests.fixtures import app_client

CHAIN = {
    "steps": [
        {"kind": "step", "message": "one", "payload": {"n": 1}},
        {"group": [{"message": "a"}, {"message": "b", "priority": 1, "queue": "side"}]},
        {"kind": "collect", "message": "fan-in"},
    ]
}


async def create(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/workflows", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/workflows/{response.json()['id']}"
    return dict(response.json())


async def test_create_stores_the_steps_and_starts_the_first(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    created = await create(client, CHAIN)
    assert created["status"] == "running"
    steps = created["steps"]
    assert [(s["position"], s["group"], s["status"]) for s in steps] == [
        (1, False, "running"),
        (2, True, "waiting"),
        (3, False, "waiting"),
    ]
    assert [t["status"] for t in steps[1]["tasks"]] == ["waiting", "waiting"]
    assert steps[1]["remaining"] == 2 and steps[1]["tasks"][1]["task_id"] is None
    first = steps[0]["tasks"][0]
    task = (await client.get(f"/tasks/{first['task_id']}")).json()
    assert (task["kind"], task["status"], task["workflow_id"]) == ("step", "pending", created["id"])
    assert await db.fetchval("SELECT count(*) FROM tasks") == 1, "later steps wait for their turn"
    member = await db.fetchrow("SELECT * FROM workflow_members WHERE member = 1")
    assert (member["priority"], member["queue"], member["max_attempts"]) == (1, "side", 3)
    again = await client.get(f"/workflows/{created['id']}")
    assert again.status_code == 200 and again.json() == created


@pytest.mark.parametrize(
    "body",
    [
        {"steps": []},
        {"steps": [{"message": "ok"}, {"kind": "no-such-kind", "message": "x"}]},
        {"steps": [{"message": "ok"}, {"group": []}]},
        {"steps": [{"group": [{"message": "ok"}, {"kind": "sleep", "message": "x",
                                                  "payload": {"seconds": -1}}]}]},
        {"steps": [{"message": "ok", "delay_seconds": 5}]},
        {"steps": [{"message": " "}]},
        {"steps": [{"message": "ok", "priority": False}]},
        {"steps": [{"message": "ok", "max_attempts": "3"}]},
        {"steps": "one"},
        {"chain": [{"message": "ok"}]},
    ],
)  # fmt: skip
async def test_bad_bodies_are_refused_and_write_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, body: dict[str, Any]
) -> None:
    response = await client.post("/workflows", json=body)
    assert response.status_code == 422, response.text
    assert "detail" in response.json()
    assert await db.fetchval("SELECT count(*) FROM workflows") == 0
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_depth_and_fan_out_are_capped_by_settings(
    settings: Settings, db: asyncpg.Connection
) -> None:
    capped = settings.model_copy(update={"workflow_max_steps": 3, "workflow_max_group": 4})
    async with app_client(capped) as client:
        deep = {"steps": [{"message": str(n)} for n in range(4)]}
        refused = await client.post("/workflows", json=deep)
        assert refused.status_code == 422
        assert "WORKFLOW_MAX_STEPS is 3" in refused.json()["detail"]
        wide = {"steps": [{"group": [{"message": str(n)} for n in range(5)]}]}
        refused = await client.post("/workflows", json=wide)
        assert refused.status_code == 422
        assert "WORKFLOW_MAX_GROUP is 4" in refused.json()["detail"]
        assert await db.fetchval("SELECT count(*) FROM workflows") == 0
        await create(client, {"steps": [{"group": [{"message": "n"}] * 4}] * 3})


async def test_unknown_and_malformed_ids(client: httpx.AsyncClient) -> None:
    missing = await client.get("/workflows/019a8f3c-5a7e-7c11-9d2e-6f1b2a3c4d5e")
    assert missing.status_code == 404 and "detail" in missing.json()
    assert (await client.get("/workflows/nope")).status_code == 422
    cancel = {"status": "canceled"}
    gone = await client.patch("/workflows/019a8f3c-5a7e-7c11-9d2e-6f1b2a3c4d5e", json=cancel)
    assert gone.status_code == 404


async def test_cancel_cancels_what_has_not_run(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    created = await create(client, CHAIN)
    canceled = await client.patch(f"/workflows/{created['id']}", json={"status": "canceled"})
    assert canceled.status_code == 200, canceled.text
    body = canceled.json()
    assert body["status"] == "canceled" and body["finished_at"] is not None
    assert [s["status"] for s in body["steps"]] == ["running", "canceled", "canceled"]
    assert body["steps"][0]["tasks"][0]["status"] == "canceled", "its pending task is canceled"
    assert body["steps"][2]["error"] == "canceled: the workflow was canceled"
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE status <> 'canceled'") == 0
    twice = await client.patch(f"/workflows/{created['id']}", json={"status": "canceled"})
    assert twice.status_code == 200
    await db.execute("UPDATE workflows SET status = 'completed'")
    late = await client.patch(f"/workflows/{created['id']}", json={"status": "canceled"})
    assert late.status_code == 409 and "detail" in late.json()
    assert (await client.patch(f"/workflows/{created['id']}", json={})).status_code == 422


def test_every_route_documents_its_answers() -> None:
    from main import create_app

    paths = create_app().openapi()["paths"]
    assert set(paths["/workflows"]["post"]["responses"]) >= {"201", "422", "503"}
    assert set(paths["/workflows/{workflow_id}"]["get"]["responses"]) >= {"200", "404", "503"}
    assert set(paths["/workflows/{workflow_id}"]["patch"]["responses"]) >= {"200", "404", "409"}
