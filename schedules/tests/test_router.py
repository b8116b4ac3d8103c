"""The schedules API: create, list, change, delete, run now; bad bodies write nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

SCHEDULE = {"id": "report", "kind": "echo", "cron": "*/5 * * * *", "timezone": "Europe/Berlin"}


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await client.post("/schedules", json={**SCHEDULE, **fields})
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/schedules/{response.json()['id']}"
    return dict(response.json())


async def test_create_get_and_list(client: httpx.AsyncClient) -> None:
    created = await create(client)
    assert created["catch_up"] == "latest" and created["enabled"] is True
    assert created["message"] == "schedule report" and created["declared"] is False
    assert created["last_run_at"] is None and created["last_task_status"] is None
    next_run = datetime.fromisoformat(created["next_run_at"])
    assert next_run.minute % 5 == 0 and next_run.second == 0
    await create(client, id="beat", cron=None, every_seconds=30, catch_up="none")

    got = await client.get("/schedules/report")
    assert got.status_code == 200 and got.json()["next_run_at"] == created["next_run_at"]
    first = await client.get("/schedules", params={"limit": 1})
    assert [item["id"] for item in first.json()["items"]] == ["beat"]
    rest = await client.get("/schedules", params={"cursor": first.json()["next_cursor"]})
    assert [item["id"] for item in rest.json()["items"]] == ["report"]
    assert rest.json()["next_cursor"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"cron": "61 * * * *"},
        {"cron": "* * * * * *"},
        {"cron": "0 0 31 2 *"},
        {"every_seconds": 10},
        {"cron": None},
        {"timezone": "Mars/Olympus"},
        {"kind": "no-such-kind"},
        {"kind": "sleep", "payload": {"seconds": -1}},
        {"catch_up": "sometimes"},
        {"id": "has space"},
        {"colour": "red"},
        {"payload": {"text": "a\u0000b"}},
        {"cron": "0 2 * * *", "every_seconds": 30},
        {"cron": None, "every_seconds": "30"},
        {"priority": True},
        {"enabled": "yes"},
        {"message": " \u001f "},
    ],
)
async def test_bad_bodies_are_refused_and_write_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, body: dict[str, Any]
) -> None:
    response = await client.post("/schedules", json={**SCHEDULE, **body})
    assert response.status_code == 422, response.text
    assert "detail" in response.json()
    assert await db.fetchval("SELECT count(*) FROM schedules") == 0


async def test_the_same_id_twice_is_a_conflict(client: httpx.AsyncClient) -> None:
    await create(client)
    again = await client.post("/schedules", json=SCHEDULE)
    assert again.status_code == 409 and "detail" in again.json()


async def test_patch_changes_the_rule_and_restarts_from_now(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await create(client)
    changed = await client.patch("/schedules/report", json={"every_seconds": 7, "priority": 1})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["cron"], body["every_seconds"], body["priority"]) == (None, 7, 1)
    assert datetime.fromisoformat(body["next_run_at"]).timestamp() % 7 == 0

    off = await client.patch("/schedules/report", json={"enabled": False, "priority": None})
    assert off.json()["enabled"] is False and off.json()["priority"] is None
    refused = await client.patch("/schedules/report", json={"cron": "nope"})
    assert refused.status_code == 422
    both = await client.patch("/schedules/report", json={"cron": "* * * * *", "every_seconds": 1})
    assert both.status_code == 422
    assert await db.fetchval("SELECT every_seconds FROM schedules") == 7
    missing = await client.patch("/schedules/nothing", json={"enabled": True})
    assert missing.status_code == 404 and "detail" in missing.json()


async def test_delete(client: httpx.AsyncClient) -> None:
    await create(client)
    assert (await client.delete("/schedules/report")).status_code == 204
    assert (await client.get("/schedules/report")).status_code == 404
    assert (await client.delete("/schedules/report")).status_code == 404


async def test_run_now_creates_one_task_and_leaves_the_ticks_alone(
    client: httpx.AsyncClient,
) -> None:
    created = await create(client, payload={"x": 1}, message="weekly report")
    ran = await client.post("/schedules/report/run")
    assert ran.status_code == 201, ran.text
    task = ran.json()
    assert (task["kind"], task["message"], task["payload"]) == ("echo", "weekly report", {"x": 1})
    assert (await client.get(f"/tasks/{task['id']}")).status_code == 200
    after = (await client.get("/schedules/report")).json()
    assert after["next_run_at"] == created["next_run_at"]
    assert (await client.post("/schedules/nothing/run")).status_code == 404


def test_every_route_documents_its_answers() -> None:
    from main import create_app

    spec = create_app().openapi()
    paths = spec["paths"]
    assert set(paths["/schedules"]["post"]["responses"]) >= {"201", "409", "422", "503"}
    assert set(paths["/schedules/{schedule_id}"]["patch"]["responses"]) >= {"200", "404", "422"}
    assert set(paths["/schedules/{schedule_id}/run"]["post"]["responses"]) >= {"201", "404"}
    create_body = spec["components"]["schemas"]["ScheduleCreate"]
    assert len(create_body["oneOf"]) == 2  # cron or every_seconds, exactly one
