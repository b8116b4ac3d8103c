"""POST /tasks/batch over HTTP, on real PostgreSQL and Redis: each item judged as
POST /tasks judges it, the admitted ones written together, an answer per item."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from app.config import Settings
from app.lifespan import Resources, close_resources, open_resources
from auth.tests.conftest import Keys, bearer, keys_settings
from tasks.batch import SLICE_ITEMS
from tasks.tests.fixtures import (
    Stores,
    WorkerFactory,
    app_client,
    free_port,
    make_settings,
    wait_status,
)

MIB = 1024 * 1024


async def batch(http: httpx.AsyncClient, items: list[Any], **headers: str) -> dict[str, Any]:
    answer = await http.post("/tasks/batch", json={"tasks": items}, headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert [result["index"] for result in body["results"]] == list(range(len(items)))
    return body


def statuses(body: dict[str, Any]) -> list[int]:
    return [result["status"] for result in body["results"]]


async def rows(db: asyncpg.Connection) -> list[Any]:
    return list(await db.fetch("SELECT * FROM tasks ORDER BY id"))


async def rung(resources: Resources, queue: str = "default") -> set[str]:
    return set(await resources.redis.zrange(resources.keys.ready(queue), 0, -1))


async def test_valid_items_are_created_and_each_invalid_one_is_refused_alone(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    body = await batch(
        client,
        [
            {"message": "one"},
            {"message": ""},
            {"message": "x", "kind": "no_such_kind"},
            {"message": "two", "kind": "sleep", "payload": {"seconds": 0.1}, "priority": 0},
            {"message": "x", "priority": 42, "colour": "red"},
            {"message": "x", "then": [{"message": "after"}]},
            {"message": "x", "run_at": "2030-01-01T00:00:00Z", "delay_seconds": 5},
            {"message": "three", "queue": "other", "delay_seconds": 60},
        ],
    )
    assert statuses(body) == [201, 422, 422, 201, 422, 422, 422, 201]
    assert (body["created"], body["replayed"], body["refused"]) == (3, 0, 5)
    results = body["results"]
    assert results[1]["error"]["errors"] == [
        {"loc": ["body", "tasks", 1, "message"], "type": "string_too_short",
         "msg": "String should have at least 1 character"},
    ]  # fmt: skip
    assert results[1]["error"]["detail"].startswith("invalid request: body.tasks.1.message: ")
    assert "unknown kind 'no_such_kind'" in results[2]["error"]["detail"]
    assert "errors" not in results[2]["error"]  # a rule, as POST /tasks answers it
    assert {e["loc"][-1] for e in results[4]["error"]["errors"]} == {"priority", "colour"}
    assert [e["loc"] for e in results[5]["error"]["errors"]] == [["body", "tasks", 5, "then"]]
    assert "not both" in results[6]["error"]["detail"]
    assert all("task" not in result for result in results if result["status"] == 422)

    stored = await rows(db)
    assert [row["message"] for row in stored] == ["one", "two", "three"]
    created = [results[i]["task"] for i in (0, 3, 7)]
    assert [task["id"] for task in created] == [str(row["id"]) for row in stored]
    assert created[1]["priority"] == 0 and created[2]["queue"] == "other"
    assert all(task["status"] == "pending" for task in created)
    for task in created:  # each task as GET /tasks/{id} answers it
        assert (await client.get(f"/tasks/{task['id']}")).json() == task
    # The ready ones rung now, the delayed one scheduled
    assert await rung(resources) == {created[0]["id"], created[1]["id"]}
    scheduled = await resources.redis.zrange(resources.keys.scheduled("other"), 0, -1)
    assert [member.split(":", 1)[1] for member in scheduled] == [created[2]["id"]]


@pytest.mark.parametrize(
    "envelope",
    [
        {},
        {"tasks": []},
        {"tasks": {"message": "x"}},
        {"tasks": [{"message": "x"}] * 1001},
        {"tasks": [{"message": "x"}, "not an object"]},
        {"tasks": [{"message": "x"}], "extra": 1},
        [{"message": "x"}],
    ],
    ids=["no tasks", "empty", "not a list", "1001 items", "an item not an object",
         "another field", "a bare list"],
)  # fmt: skip
async def test_a_malformed_envelope_is_refused_whole_and_writes_nothing(
    envelope: Any, client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    answer = await client.post("/tasks/batch", json=envelope)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("invalid request: body")
    assert await rows(db) == [] and await rung(resources) == set()


async def test_a_thousand_tasks_are_written_together_and_run(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    resources: Resources,
    start_worker: WorkerFactory,
) -> None:
    before = await resources.redis.xrange(resources.keys.events)
    body = await batch(client, [{"message": f"task {n}"} for n in range(1000)])
    assert body["created"] == 1000 and set(statuses(body)) == {201}
    stored = await rows(db)
    assert len(stored) == 1000
    # One transaction (copied a slice at a time), so one now() for every row; every
    # id rung; each task's creation announced once, an event entry per slice
    assert len({row["created_at"] for row in stored}) == 1
    assert len(await rung(resources)) == 1000
    entries = (await resources.redis.xrange(resources.keys.events))[len(before) :]
    announced = [event for _, fields in entries for event in json.loads(fields["e"])]
    ids = [result["task"]["id"] for result in body["results"]]
    assert sorted(event[0] for event in announced) == sorted(ids)
    assert {event[1] for event in announced} == {"created"}
    assert len(entries) == math.ceil(1000 / SLICE_ITEMS)
    await start_worker()
    await wait_status(db, ids, "completed", timeout_s=60)


async def test_a_batch_stays_whole_beside_concurrent_single_posts(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    async def single(number: int) -> int:
        answer = await client.post("/tasks", json={"message": f"single {number}"})
        return answer.status_code

    items = [{"message": f"batched {n}"} for n in range(600)]
    answers = await asyncio.gather(
        *(single(n) for n in range(20)), batch(client, items), *(single(n) for n in range(20, 40))
    )
    assert answers[:20] + answers[21:] == [201] * 40
    assert answers[20]["created"] == 600
    stamps = await db.fetch(
        "SELECT created_at, count(*) AS n FROM tasks WHERE message LIKE 'batched %' GROUP BY 1"
    )
    assert [row["n"] for row in stamps] == [600]  # one INSERT, whatever came beside it
    assert await db.fetchval("SELECT count(*) FROM tasks") == 640


async def test_an_idempotency_key_per_item_replays_or_refuses_that_item(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    pay = {"message": "pay", "idempotency_key": "order-1"}
    first = await batch(client, [pay, {"message": "refund", "idempotency_key": "order-2"}])
    assert statuses(first) == [201, 201]
    original = first["results"][0]["task"]

    again = await batch(
        client,
        [
            pay,
            {"message": "pay more", "idempotency_key": "order-1"},
            {"message": "new", "idempotency_key": "order-3"},
            {"message": "new", "idempotency_key": "order-3"},
            {"message": "x", "idempotency_key": "has space"},
        ],
    )
    assert statuses(again) == [200, 422, 201, 200, 422]
    assert (again["created"], again["replayed"], again["refused"]) == (1, 2, 2)
    results = again["results"]
    assert results[0]["task"] == original
    assert "different request body" in results[1]["error"]["detail"]
    assert results[3]["task"]["id"] == results[2]["task"]["id"]  # the same key twice in one batch
    assert results[4]["error"]["errors"][0]["loc"] == ["body", "tasks", 4, "idempotency_key"]

    # The same key through POST /tasks is the same request
    single = await client.post(
        "/tasks", json={"message": "pay"}, headers={"Idempotency-Key": "order-1"}
    )
    assert (single.status_code, single.json()["id"]) == (200, original["id"])
    other = await client.post("/tasks", json={"message": "x"}, headers={"Idempotency-Key": "k"})
    replayed = await batch(client, [{"message": "x", "idempotency_key": "k"}])
    assert replayed["results"][0]["task"]["id"] == other.json()["id"]
    assert await db.fetchval("SELECT count(*) FROM tasks") == 4


async def test_a_batch_of_many_slices_judges_each_item_as_a_small_batch_would(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    """Beyond SLICE_ITEMS, the items are validated, built and copied a slice at a
    time: the answers, their order and what is stored are the same."""
    earlier = await batch(client, [{"message": "pay", "idempotency_key": "k-old"}])
    items: list[Any] = [{"message": f"m{n}"} for n in range(2 * SLICE_ITEMS + 50)]
    second, third = SLICE_ITEMS + 7, 2 * SLICE_ITEMS + 3  # in the 2nd and 3rd slices
    items[second] = {"message": ""}
    items[second + 1] = {"message": "pay", "idempotency_key": "k-old"}
    items[second + 2] = {"message": "new", "idempotency_key": "k-new"}
    items[third] = {"message": "new", "idempotency_key": "k-new"}
    items[third + 1] = {"message": "other body", "idempotency_key": "k-old"}
    items[third + 2] = {"message": "later", "queue": "other", "delay_seconds": 60}
    body = await batch(client, items)

    expected = [201] * len(items)
    expected[second], expected[second + 1], expected[third], expected[third + 1] = (
        422, 200, 200, 422,
    )  # fmt: skip
    assert statuses(body) == expected
    results = body["results"]
    assert results[second]["error"]["errors"][0]["loc"] == ["body", "tasks", second, "message"]
    assert results[second + 1]["task"] == earlier["results"][0]["task"]
    assert results[third]["task"]["id"] == results[second + 2]["task"]["id"]
    assert "different request body" in results[third + 1]["error"]["detail"]
    created = [result["task"]["id"] for result in results if result["status"] == 201]
    stored = await rows(db)
    assert len(stored) == 1 + len(created) == 1 + len(items) - 4
    assert len({row["created_at"] for row in stored[1:]}) == 1  # one transaction
    for index in (0, SLICE_ITEMS, second + 2, third + 2, len(items) - 1):
        task = results[index]["task"]
        assert (await client.get(f"/tasks/{task['id']}")).json() == task
    delayed = results[third + 2]["task"]["id"]
    assert await rung(resources) == {str(row["id"]) for row in stored} - {delayed}
    scheduled = await resources.redis.zrange(resources.keys.scheduled("other"), 0, -1)
    assert [member.split(":", 1)[1] for member in scheduled] == [delayed]


async def test_prefer_return_minimal_answers_ids_instead_of_tasks(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    first = await client.post("/tasks", json={"message": "x"}, headers={"Idempotency-Key": "k1"})
    items = [
        {"message": "a"},
        {"message": ""},
        {"message": "x", "idempotency_key": "k1"},
        {"message": "b", "payload": {"n": 1}},
    ]
    minimal = await client.post(
        "/tasks/batch", json={"tasks": items}, headers={"Prefer": "Return = minimal; x=1"}
    )
    assert minimal.status_code == 200, minimal.text
    assert minimal.headers["preference-applied"] == "return=minimal"
    body = minimal.json()
    assert [(r["index"], r["status"]) for r in body["results"]] == [
        (0, 201), (1, 422), (2, 200), (3, 201),
    ]  # fmt: skip
    assert all("task" not in result for result in body["results"])
    assert "id" not in body["results"][1] and "message" in body["results"][1]["error"]["detail"]
    assert body["results"][2]["id"] == first.json()["id"]  # the replayed key's first task
    assert (body["created"], body["replayed"], body["refused"]) == (2, 1, 1)
    stored = {str(row["id"]): row["message"] for row in await rows(db)}
    assert {body["results"][0]["id"]: "a", body["results"][3]["id"]: "b"}.items() <= (
        stored.items()
    )
    assert len(stored) == 3

    # Another preference, or none: whole tasks, and nothing said applied
    for prefer in ("return=representation, return=minimal", "respond-async"):
        full = await client.post(
            "/tasks/batch", json={"tasks": [{"message": "c"}]}, headers={"Prefer": prefer}
        )
        assert "preference-applied" not in full.headers
        assert full.json()["results"][0]["task"]["message"] == "c"
        assert "id" not in full.json()["results"][0]

    too_long = await client.post(
        "/tasks/batch", json={"tasks": [{"message": "d"}]}, headers={"Prefer": "x" * 1025}
    )
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["loc"] == ["header", "prefer"]
    assert await db.fetchval("SELECT count(*) FROM tasks") == 5


async def test_a_nearly_full_queue_takes_the_first_items_and_refuses_the_rest(
    database_url: str, stores: Stores, namespace: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(database_url, stores.redis_url, namespace, queue_max_pending=3)
    async with app_client(settings) as http:
        waiting = await batch(http, [{"message": "later", "delay_seconds": 60}])
        assert statuses(waiting) == [201]
        items = [{"message": f"m{n}"} for n in range(4)] + [{"message": "o", "queue": "other"}]
        body = await batch(http, items)
        assert statuses(body) == [201, 201, 503, 503, 201]
        single = await http.post("/tasks", json={"message": "x"})
    refusal = body["results"][2]["error"]
    assert single.status_code == 503
    assert refusal == {"detail": single.json()["detail"], "retry_after_seconds": 1}
    assert "QUEUE_MAX_PENDING is 3" in refusal["detail"]
    assert sorted(await db.fetchval("SELECT array_agg(message) FROM tasks")) == [
        "later", "m0", "m1", "o",
    ]  # fmt: skip


async def test_each_item_takes_a_rate_limit_token(
    database_url: str, stores: Stores, namespace: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(database_url, stores.redis_url, namespace, rate_limit="1/m burst 3")
    async with app_client(settings) as http:
        body = await batch(http, [{"message": f"m{n}"} for n in range(5)], **{"X-API-Key": "a"})
        again = await batch(http, [{"message": "x"}], **{"X-API-Key": "a"})
        elsewhere = await batch(http, [{"message": "x"}], **{"X-API-Key": "b"})
    assert statuses(body) == [201, 201, 201, 429, 429]
    assert statuses(again) == [429] and statuses(elsewhere) == [201]
    refusal = body["results"][3]["error"]
    assert refusal["detail"] == "rate limit reached; retry later"
    assert 1 <= refusal["retry_after_seconds"] <= 60
    assert await db.fetchval("SELECT count(*) FROM tasks") == 4


async def test_a_batch_of_many_slices_is_admitted_as_one(
    database_url: str, stores: Stores, namespace: str, db: asyncpg.Connection
) -> None:
    burst = SLICE_ITEMS + 20
    settings = make_settings(
        database_url, stores.redis_url, namespace, rate_limit=f"1/m burst {burst}"
    )
    async with app_client(settings) as http:
        body = await batch(http, [{"message": f"m{n}"} for n in range(2 * SLICE_ITEMS)])
    assert statuses(body) == [201] * burst + [429] * (2 * SLICE_ITEMS - burst)
    assert await db.fetchval("SELECT count(*) FROM tasks") == burst


async def test_tasks_belong_to_the_keys_owner_and_only_an_admin_names_another(
    database_url: str, stores: Stores, namespace: str, db: asyncpg.Connection
) -> None:
    settings = keys_settings(database_url, stores, namespace)
    opened = open_resources(settings)  # to make keys through the service
    try:
        keys = Keys(opened)
        writer = bearer(await keys.token("a", "tasks:write"))
        reader = bearer(await keys.token("a", "tasks:read"))
        admin = bearer(await keys.token("ops", "admin"))
        async with app_client(settings) as http:
            body = await batch(
                http,
                [
                    {"message": "mine"},
                    {"message": "named mine", "owner": "a"},
                    {"message": "theirs", "owner": "b"},
                    {"message": "pay", "idempotency_key": "shared"},
                ],
                **writer,
            )
            by_admin = await batch(
                http, [{"message": "for b", "owner": "b"}, {"message": "for ops"}], **admin
            )
            # Another owner's key: never handed the first owner's task
            other = bearer(await keys.token("b", "tasks:write"))
            stolen = await batch(http, [{"message": "pay", "idempotency_key": "shared"}], **other)
            single = await http.post(
                "/tasks", json={"message": "pay"}, headers={**other, "Idempotency-Key": "shared"}
            )
            no_scope = await http.post("/tasks/batch", json={"tasks": [{"message": "x"}]},
                                       headers=reader)  # fmt: skip
            no_key = await http.post("/tasks/batch", json={"tasks": [{"message": "x"}]})
    finally:
        await close_resources(opened)
    assert statuses(body) == [201, 201, 403, 201]
    assert [body["results"][i]["task"]["owner"] for i in (0, 1, 3)] == ["a", "a", "a"]
    assert "only an admin key may name another owner" in body["results"][2]["error"]["detail"]
    assert [r["task"]["owner"] for r in by_admin["results"]] == ["b", "ops"]
    assert statuses(stolen) == [422] and "different request body" in str(stolen["results"])
    assert single.status_code == 422
    assert (no_scope.status_code, no_key.status_code) == (403, 401)
    owners = await db.fetch("SELECT owner, count(*) AS n FROM tasks GROUP BY owner ORDER BY owner")
    assert [(row["owner"], row["n"]) for row in owners] == [("a", 3), ("b", 1), ("ops", 1)]


@pytest.mark.parametrize("count", [2, SLICE_ITEMS + 1], ids=["small", "many slices"])
async def test_a_store_down_fails_the_whole_batch_and_writes_nothing(
    count: int, database_url: str, stores: Stores, namespace: str, db: asyncpg.Connection,
    resources: Resources,
) -> None:  # fmt: skip
    items = [{"message": f"m{n}"} for n in range(count - 1)] + [
        {"message": "b", "kind": "no_such_kind"}
    ]
    pg_down = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x"
    redis_down = f"redis://127.0.0.1:{free_port()}/0"
    for store, settings in [
        ("postgres", make_settings(pg_down, stores.redis_url, namespace)),
        ("redis", make_settings(database_url, redis_down, namespace)),
    ]:
        async with app_client(settings) as http:
            answer = await http.post("/tasks/batch", json={"tasks": items})
        assert answer.status_code == 503, answer.text
        assert store in answer.json()["detail"] and answer.headers["retry-after"]
    assert await rows(db) == [] and await rung(resources) == set()


@pytest.mark.parametrize("count", [2, SLICE_ITEMS + 1], ids=["small", "many slices"])
async def test_a_commit_that_fails_fails_the_whole_batch_and_writes_nothing(
    count: int, client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    """A large batch's answer is made while its COMMIT is out: a COMMIT that
    fails (here a deferred check PostgreSQL runs only then) must still answer
    503, with nothing written and nothing rung."""
    await db.execute("""
        CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.message = 'refused at commit' THEN RAISE EXCEPTION 'refused at commit'; END IF;
            RETURN NULL;
        END $$;
        CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON tasks
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit();
    """)  # fmt: skip
    items = [{"message": f"m{n}"} for n in range(count - 1)] + [{"message": "refused at commit"}]
    answer = await client.post("/tasks/batch", json={"tasks": items})
    assert answer.status_code == 503, answer.text
    assert "postgres" in answer.json()["detail"] and answer.headers["retry-after"]
    assert await rows(db) == [] and await rung(resources) == set()
    body = await batch(client, [{"message": f"m{n}"} for n in range(count)])  # the next one goes
    assert body["created"] == count and len(await rows(db)) == count


async def test_the_body_limit_is_larger_for_this_route_only(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    payload = {"blob": "x" * (200 * 1024)}
    items = [{"message": f"m{n}", "payload": payload} for n in range(10)]  # ~2 MiB
    body = await batch(client, items)
    assert body["created"] == 10
    single = await client.post("/tasks", json={"message": "m", "payload": {"blob": "x" * MIB}})
    assert single.status_code == 413
    too_large = await client.post("/tasks/batch", json={"tasks": items * 5})  # ~10 MiB
    assert too_large.status_code == 413
    assert too_large.json()["detail"] == f"request body is over {8 * MIB} bytes"
    assert await db.fetchval("SELECT count(*) FROM tasks") == 10


async def test_openapi_documents_the_batch(client: httpx.AsyncClient, settings: Settings) -> None:
    schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/tasks/batch"]["post"]
    assert set(operation["responses"]) >= {"200", "401", "403", "413", "422", "503"}
    ok = operation["responses"]["200"]["content"]["application/json"]
    assert ok["schema"] == {"$ref": "#/components/schemas/BatchOut"}
    assert "Preference-Applied" in operation["responses"]["200"]["headers"]
    [prefer] = [param for param in operation["parameters"] if param["name"] == "prefer"]
    assert (prefer["in"], prefer["schema"]["maxLength"]) == ("header", 1024)
    result = schema["components"]["schemas"]["BatchResult"]["properties"]
    assert {"task", "id", "error"} <= set(result)
    request = operation["requestBody"]["content"]["application/json"]["schema"]
    envelope = schema["components"]["schemas"][request["$ref"].rsplit("/", 1)[1]]
    items = envelope["properties"]["tasks"]
    assert (items["minItems"], items["maxItems"]) == (1, 1000)
    assert items["items"]["anyOf"][0]["title"] == "TaskBatchItem"
    assert uuid.UUID(schema["components"]["schemas"]["BatchOut"]["examples"][0]["results"][0][
        "task"]["id"])  # fmt: skip


async def test_batch_is_never_taken_for_a_task_id(client: httpx.AsyncClient) -> None:
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        answer = await client.request(method, "/tasks/batch", json={"status": "canceled"})
        assert (answer.status_code, answer.headers["allow"]) == (405, "POST"), method
    assert (await client.post("/tasks/batch/retry")).status_code == 404
    # Any other word is still an id the route refuses as such
    assert (await client.get("/tasks/batches")).status_code == 422
    assert (await client.get(f"/tasks/{uuid.uuid4()}")).status_code == 404
