"""Publishing: fan-out to subscribed queues by filter, in one transaction."""

from __future__ import annotations

import json
from collections import Counter

import asyncpg
import httpx
import pytest

from app.lifespan import Resources
from topics import publishing
from topics.message_schemas import MessageIn
from topics.tests.conftest import create_queue, create_topic, lease


@pytest.fixture
async def orders(client: httpx.AsyncClient) -> None:
    """Topic `orders` with three queues; `us` accepts only region=us."""
    await create_topic(client, "orders")
    await create_queue(client, "billing", topic_id="orders")
    await create_queue(client, "eu", topic_id="orders", message_filters={"region": ["eu", "ch"]})
    await create_queue(client, "us", topic_id="orders", message_filters={"region": ["us"]})


async def queues_of_messages(db: asyncpg.Connection) -> Counter[str]:
    rows = await db.fetch("SELECT queue FROM tasks WHERE kind = 'message'")
    return Counter(row["queue"] for row in rows)


async def test_one_publish_creates_a_task_in_each_matching_queue(
    client: httpx.AsyncClient, db: asyncpg.Connection, orders: None
) -> None:
    body = {"data": {"order": 42}, "attributes": {"region": "eu"}}
    response = await client.post("/topics/orders/messages", json=body)
    assert response.status_code == 201, response.text
    published = response.json()["messages"]
    assert sorted(m["queue"] for m in published) == ["billing", "eu"]
    assert {m["index"] for m in published} == {0}
    assert await queues_of_messages(db) == Counter({"billing": 1, "eu": 1})

    [eu] = await lease(client, "eu")
    assert eu["data"] == {"order": 42} and eu["attributes"] == {"region": "eu"}
    row = await db.fetchrow("SELECT kind, payload FROM tasks WHERE id = $1::uuid", eu["id"])
    assert row["kind"] == "message"
    assert json.loads(row["payload"]) == {"data": {"order": 42}, "attributes": {"region": "eu"}}
    assert await lease(client, "us") == []


async def test_a_failure_half_way_through_a_fan_out_creates_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources, orders: None
) -> None:
    # The database refuses the row for `eu`, which comes after `billing`.
    await db.execute(
        "CREATE FUNCTION refuse_eu() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN IF NEW.queue = 'eu' THEN RAISE EXCEPTION 'no eu today'; END IF;"
        " RETURN NEW; END $$"
    )
    await db.execute(
        "CREATE TRIGGER refuse_eu BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION refuse_eu()"
    )
    messages = [MessageIn(data=1, attributes={"region": "us"}), MessageIn(data=2)]
    messages.append(MessageIn(data=3, attributes={"region": "eu"}))
    with pytest.raises(asyncpg.RaiseError):
        await publishing.publish(resources=resources, topic_id="orders", messages=messages)
    assert await queues_of_messages(db) == Counter()
    assert await lease(client, "billing") == []


async def test_a_message_no_queue_accepts_is_dropped(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await create_topic(client, "orders")
    await create_queue(client, "us", topic_id="orders", message_filters={"region": ["us"]})
    for body in ({"data": 1}, {"data": 1, "attributes": {"region": "eu"}}):
        response = await client.post("/topics/orders/messages", json=body)
        assert response.status_code == 201 and response.json() == {"messages": []}
    await create_topic(client, "lonely")
    response = await client.post("/topics/lonely/messages", json={"data": 1})
    assert response.status_code == 201 and response.json() == {"messages": []}
    assert await queues_of_messages(db) == Counter()


async def test_a_batch_of_500_fans_out_in_one_request(
    client: httpx.AsyncClient, db: asyncpg.Connection, orders: None
) -> None:
    regions = ["eu", "us", "fr", "ch"]
    batch = [{"data": n, "attributes": {"region": regions[n % 4]}} for n in range(500)]
    response = await client.post("/topics/orders/messages", json={"messages": batch})
    assert response.status_code == 201, response.text
    published = response.json()["messages"]
    assert len(published) == 500 + 250 + 125
    assert await queues_of_messages(db) == Counter({"billing": 500, "eu": 250, "us": 125})
    us = [m["index"] for m in published if m["queue"] == "us"]
    assert us == list(range(1, 500, 4))
    too_many = await client.post("/topics/orders/messages", json={"messages": batch + batch[:1]})
    assert too_many.status_code == 422 and too_many.json()["detail"]


async def test_put_goes_to_one_queue_whatever_its_filters(
    client: httpx.AsyncClient, db: asyncpg.Connection, orders: None
) -> None:
    response = await client.post("/queues/us/messages", json={"data": "direct"})
    assert response.status_code == 201, response.text
    [published] = response.json()["messages"]
    assert published["queue"] == "us"
    assert await queues_of_messages(db) == Counter({"us": 1})
    [message] = await lease(client, "us")
    assert message["id"] == published["id"] and message["data"] == "direct"


async def test_publishing_to_an_unknown_topic_or_queue_is_404(client: httpx.AsyncClient) -> None:
    for path in ("/topics/nope/messages", "/queues/nope/messages"):
        response = await client.post(path, json={"data": 1})
        assert response.status_code == 404 and response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"data": "x" * (256 * 1024)},
        {"data": "nul \u0000"},
        {"data": 1, "attributes": {"region": 1}},
        {"data": 1, "attributes": {f"k{n}": "v" for n in range(101)}},
        {"data": 1, "surprise": True},
        {"messages": []},
    ],
)
async def test_bad_messages_are_refused_and_nothing_is_written(
    client: httpx.AsyncClient, db: asyncpg.Connection, orders: None, body: dict
) -> None:
    response = await client.post("/topics/orders/messages", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert await queues_of_messages(db) == Counter()
