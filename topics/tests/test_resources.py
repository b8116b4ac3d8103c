"""Topics and queues as resources over HTTP: create, read, change, delete, stats."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from app.lifespan import Resources
from topics import service
from topics.tests.conftest import create_queue, create_topic, lease, put


async def test_topics_are_created_once_listed_in_pages_and_read(
    client: httpx.AsyncClient,
) -> None:
    for name in ("c", "a", "b"):
        await create_topic(client, name)
    again = await client.post("/topics", json={"id": "a"})
    assert again.status_code == 409 and again.json()["detail"]

    first = (await client.get("/topics", params={"limit": 2})).json()
    assert [t["id"] for t in first["items"]] == ["a", "b"]
    rest = (await client.get("/topics", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert [t["id"] for t in rest["items"]] == ["c"] and rest["next_cursor"] is None

    await create_queue(client, "q1", topic_id="a")
    found = await client.get("/topics/a")
    assert found.status_code == 200 and found.json()["queues"] == ["q1"]
    missing = await client.get("/topics/zzz")
    assert missing.status_code == 404 and missing.json()["detail"]


@pytest.mark.parametrize("body", [{}, {"id": ""}, {"id": "has space"}, {"id": "x" * 65}])
async def test_bad_topic_ids_are_refused(client: httpx.AsyncClient, body: dict) -> None:
    response = await client.post("/topics", json=body)
    assert response.status_code == 422 and response.json()["detail"]


async def test_a_topic_with_queues_is_deleted_only_with_force(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await create_topic(client, "orders")
    await create_queue(client, "billing", topic_id="orders")
    refused = await client.delete("/topics/orders")
    assert refused.status_code == 409 and refused.json()["detail"]
    assert (await client.get("/topics/orders")).status_code == 200

    assert (await client.delete("/topics/orders", params={"force": "true"})).status_code == 204
    assert (await client.get("/topics/orders")).status_code == 404
    queue = (await client.get("/queues/billing")).json()
    assert queue["topic_id"] is None  # detached, still there
    assert (await client.delete("/topics/orders")).status_code == 404


async def test_a_queue_is_created_read_changed_and_listed_by_get_queues(
    client: httpx.AsyncClient,
) -> None:
    await create_topic(client, "orders")
    await create_queue(client, "dead")
    created = await create_queue(
        client,
        "eu",
        topic_id="orders",
        ack_deadline_seconds=15,
        message_max_deliveries=3,
        dead_queue_id="dead",
        message_filters={"region": ["eu", "ch"]},
    )
    assert created["message_retention_seconds"] == 7 * 86400
    assert (await client.get("/queues/eu")).json() == created
    again = await client.post("/queues", json={"id": "eu"})
    assert again.status_code == 409 and again.json()["detail"]

    changed = await client.patch("/queues/eu", json={"ack_deadline_seconds": 60, "topic_id": None})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["ack_deadline_seconds"], body["topic_id"], body["dead_queue_id"]) == (
        60, None, "dead",
    )  # fmt: skip
    cleared = (await client.patch("/queues/eu", json={"dead_queue_id": None})).json()
    assert cleared["dead_queue_id"] is None and cleared["message_max_deliveries"] == 3

    names = [q["name"] for q in (await client.get("/queues")).json()["queues"]]
    assert {"default", "eu", "dead"} <= set(names)  # GET /queues still answers, with them


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        # Another resource's state: the topic or dead queue named is not there
        # (404), or the queue would be its own dead queue (409).
        ({"topic_id": "nope"}, 404),
        ({"dead_queue_id": "nope"}, 404),
        ({"dead_queue_id": "q"}, 409),
    ]
    + [
        (fields, 422)  # does not fit the schema
        for fields in [
            {"ack_deadline_seconds": 0},
            {"message_retention_seconds": 0},
            {"message_max_deliveries": 101},
            {"message_filters": {"region": []}},
            {"message_filters": {"region": "eu"}},
            {"message_filters": {"": ["eu"]}},
            {"message_filters": {f"a{n}": ["x"] for n in range(21)}},
            {"message_filters": {"region": ["x" * 1025]}},
            {"message_filters": {"a\x00": ["x"]}},
            {"message_max_deliveries": True},
            {"ack_deadline_seconds": "30"},
            {"surprise": 1},
        ]
    ],
)
async def test_bad_queues_are_refused_and_nothing_is_written(
    client: httpx.AsyncClient, db: asyncpg.Connection, fields: dict, status: int
) -> None:
    response = await client.post("/queues", json={"id": "q", **fields})
    assert response.status_code == status, response.text
    assert response.json()["detail"]
    assert await db.fetchval("SELECT count(*) FROM queues") == 0


async def test_bad_changes_are_refused(client: httpx.AsyncClient) -> None:
    await create_queue(client, "q")
    for body, status in (
        ({"ack_deadline_seconds": None}, 422),
        ({"dead_queue_id": "q"}, 409),
        ({"topic_id": "nope"}, 404),
        ({"dead_queue_id": "nope"}, 404),
    ):
        response = await client.patch("/queues/q", json=body)
        assert response.status_code == status, body
        assert body.popitem()[0] in response.json()["detail"] or status == 422
    assert (await client.patch("/queues/nope", json={})).status_code == 404
    assert (await client.get("/queues/has%20space")).status_code == 422


async def test_stats_count_messages_and_include_what_get_queues_reports(
    client: httpx.AsyncClient,
) -> None:
    await create_queue(client, "work")
    empty = (await client.get("/queues/work/stats")).json()
    assert (empty["num_undelivered_messages"], empty["num_leased_messages"]) == (0, 0)
    assert empty["oldest_unacked_message_age_seconds"] is None

    await put(client, "work", 1, 2, 3)
    await lease(client, "work", max_messages=1)
    stats = (await client.get("/queues/work/stats")).json()
    assert stats["num_undelivered_messages"] == 2 and stats["num_leased_messages"] == 1
    assert stats["oldest_unacked_message_age_seconds"] >= 0
    assert stats["num_dead_messages"] == 0
    overview = (await client.get("/queues")).json()["queues"]
    listed = next(q for q in overview if q["name"] == "work")
    for key in ("name", "pending", "ready", "scheduled", "processing", "priorities"):
        assert stats[key] == listed[key], key
    assert (await client.get("/queues/nope/stats")).status_code == 404


async def test_deleting_a_queue_deletes_its_messages_in_batches(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    await create_queue(client, "doomed")
    await create_queue(client, "kept", dead_queue_id="doomed")
    await put(client, "doomed", *range(25))
    await put(client, "kept", "stays")
    await lease(client, "doomed", max_messages=5)  # leased ones go too

    assert await service.delete_queue(resources=resources, queue_id="doomed", batch=10) == 25
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE queue = 'doomed'") == 0
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE queue = 'kept'") == 1
    assert (await client.get("/queues/doomed")).status_code == 404
    assert (await client.get("/queues/kept")).json()["dead_queue_id"] is None
    assert (await client.delete("/queues/doomed")).status_code == 404


async def test_a_queue_half_deleted_is_gone_and_a_second_delete_finishes(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await create_queue(client, "doomed")
    await put(client, "doomed", 1, 2)
    # As if DELETE had been interrupted after marking the queue.
    await db.execute("UPDATE queues SET deleting_at = now() WHERE id = 'doomed'")
    assert (await client.get("/queues/doomed")).status_code == 404
    assert (await client.post("/queues/doomed/messages", json={"data": 1})).status_code == 404
    recreate = await client.post("/queues", json={"id": "doomed"})
    assert recreate.status_code == 409 and "DELETE" in recreate.json()["detail"]

    assert (await client.delete("/queues/doomed")).status_code == 204
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0
    await create_queue(client, "doomed")


async def test_openapi_documents_every_route_with_its_statuses(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    expected = {
        ("/topics", "post"): {"201", "409", "422", "503"},
        ("/topics", "get"): {"200", "422", "503"},
        ("/topics/{topic_id}", "get"): {"200", "404", "503"},
        ("/topics/{topic_id}", "delete"): {"204", "404", "409", "503"},
        ("/topics/{topic_id}/messages", "post"): {"201", "404", "422", "503"},
        ("/queues", "get"): {"200", "503"},
        ("/queues", "post"): {"201", "404", "409", "422", "503"},
        ("/queues/{queue_id}", "get"): {"200", "404", "503"},
        ("/queues/{queue_id}", "patch"): {"200", "404", "409", "422", "503"},
        ("/queues/{queue_id}", "delete"): {"204", "404", "503"},
        ("/queues/{queue_id}/stats", "get"): {"200", "404", "503"},
        ("/queues/{queue_id}/messages", "post"): {"201", "404", "422", "503"},
        ("/queues/{queue_id}/lease", "post"): {"200", "404", "422", "503"},
        ("/queues/{queue_id}/redrive", "post"): {"200", "404", "503"},
        ("/messages/{message_id}/ack", "post"): {"204", "404", "409", "422", "503"},
        ("/messages/{message_id}/nack", "post"): {"204", "404", "409", "422", "503"},
        ("/messages/{message_id}/extend", "post"): {"200", "404", "409", "422", "503"},
    }
    for (path, method), statuses in expected.items():
        documented = set(paths[path][method]["responses"])
        assert statuses <= documented, (path, method, documented)
    body = paths["/queues"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("QueueCreate")
