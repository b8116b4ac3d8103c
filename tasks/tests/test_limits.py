"""Admission controls: a token bucket per client shared by API processes, and
load shedding on the number of waiting tasks. Nothing is written when refused."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from app.config import Settings, parse_rate_limit
from main import create_app
from tasks import limits
from tasks.tests.fixtures import (
    Stores,
    WorkerFactory,
    app_client,
    make_settings,
    wait_for,
    wait_status,
)


def limited(database_url: str, stores: Stores, namespace: str, **overrides: Any) -> Settings:
    return make_settings(database_url, stores.redis_url, namespace, **overrides)


async def post(http: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await http.post("/tasks", json={"message": "x"}, headers=headers)


async def test_token_bucket_admits_the_burst_then_the_refill_rate(
    database_url: str, stores: Stores, namespace: str, db: asyncpg.Connection
) -> None:
    settings = limited(database_url, stores, namespace, rate_limit="5/s burst 10")
    async with app_client(settings) as http:
        began = time.monotonic()
        answers = [await post(http) for _ in range(40)]
        elapsed_s = time.monotonic() - began
    accepted = sum(answer.status_code == 201 for answer in answers)
    refused = [answer for answer in answers if answer.status_code != 201]
    # The burst, plus what refilled meanwhile, give or take one token.
    assert 10 <= accepted <= 10 + elapsed_s * 5 + 1, (accepted, elapsed_s)
    assert refused and all(answer.status_code == 429 for answer in refused)
    assert all(int(answer.headers["retry-after"]) >= 1 for answer in refused)
    assert "rate limit" in refused[0].json()["detail"]
    assert await db.fetchval("SELECT count(*) FROM tasks") == accepted


async def test_each_api_key_has_its_own_bucket(
    database_url: str, stores: Stores, namespace: str
) -> None:
    settings = limited(database_url, stores, namespace, rate_limit="1/m burst 2")
    async with app_client(settings) as http:
        first = [(await post(http, **{"X-API-Key": "alice"})).status_code for _ in range(3)]
        other = [(await post(http, **{"X-API-Key": "bob"})).status_code for _ in range(3)]
        anonymous = [(await post(http)).status_code for _ in range(3)]
    assert first == other == anonymous == [201, 201, 429]


async def test_the_bucket_is_shared_by_api_processes(
    database_url: str, stores: Stores, namespace: str
) -> None:
    settings = limited(database_url, stores, namespace, rate_limit="1/m burst 4")
    async with app_client(settings) as one, app_client(settings) as two:
        codes = [(await post(http)).status_code for http in (one, two) * 4]
    assert codes.count(201) == 4 and codes.count(429) == 4, codes


async def test_queue_max_pending_sheds_load_until_workers_catch_up(
    database_url: str,
    stores: Stores,
    namespace: str,
    db: asyncpg.Connection,
    start_worker: WorkerFactory,
) -> None:
    settings = limited(database_url, stores, namespace, queue_max_pending=5)
    async with app_client(settings) as http:
        codes = [(await post(http)).status_code for _ in range(7)]
        assert codes == [201] * 5 + [503] * 2, codes
        shed = await post(http)
        assert shed.headers["retry-after"] == "1"
        assert "QUEUE_MAX_PENDING" in shed.json()["detail"]
        assert await db.fetchval("SELECT count(*) FROM tasks") == 5

        await start_worker()

        async def admitted() -> bool:
            return (await post(http)).status_code == 201

        await wait_for(admitted, what="a POST admitted once the backlog drained")


async def test_tasks_that_end_without_running_no_longer_count_as_waiting(
    database_url: str,
    stores: Stores,
    namespace: str,
    db: asyncpg.Connection,
    start_worker: WorkerFactory,
) -> None:
    settings = limited(database_url, stores, namespace, queue_max_pending=2)
    async with app_client(settings) as http:
        expiring = await http.post("/tasks", json={"message": "x", "ttl_seconds": 0.2})
        canceled = await post(http)
        assert (expiring.status_code, canceled.status_code) == (201, 201)
        assert (await post(http)).status_code == 503

        async def admitted() -> bool:
            return (await post(http)).status_code == 201

        cancel = {"status": "canceled"}
        assert (await http.patch(canceled.headers["location"], json=cancel)).status_code == 200
        await wait_for(admitted, what="a POST admitted once the canceled task left the queue")
        assert (await post(http)).status_code == 503
        # This worker sweeps expired tasks but never pops the default queue.
        await start_worker(worker_queues="elsewhere")
        await wait_status(db, [expiring.json()["id"]], "expired")
        await wait_for(admitted, what="a POST admitted once the expired task left the queue")
        assert (await post(http)).status_code == 503
        default = next(
            q for q in (await http.get("/queues")).json()["queues"] if q["name"] == "default"
        )
        assert default["pending"] == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [("100/s", (100.0, 100.0)), ("100/s burst 200", (100.0, 200.0)), ("60/m", (1.0, 60.0))],
)
def test_rate_limit_settings_parse(text: str, expected: tuple[float, float]) -> None:
    assert parse_rate_limit(text) == expected


@pytest.mark.parametrize("text", ["100", "100/d", "0/s", "100/s burst", "x/s", "100/s cap 5"])
def test_bad_rate_limit_settings_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="100/s"):
        parse_rate_limit(text)


# A burst of 5,000 POSTs -------------------------------------------------------

BURST_REQUESTS = 5_000
BURST_CLIENTS = 50
RATE_PER_S, BUCKET = 200, 500
# The tolerance: the accepted count matches the bucket to within one
# refill period, one second of tokens at the rate.
REFILL_PERIOD_S = 1.0


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@asynccontextmanager
async def running_apps(settings: Settings, count: int) -> AsyncIterator[list[Any]]:
    """`count` API apps (as many API processes would be), their lifespans run."""
    async with AsyncExitStack() as stack:
        apps = [create_app(settings) for _ in range(count)]
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield apps


async def asgi_post(app: Any, body: dict[str, Any]) -> Answer:
    """POST /tasks straight into the ASGI app, middleware and all: an HTTP client
    in the same process (httpx) would more than double the test's CPU time."""
    content = json.dumps(body).encode()
    headers = [(b"host", b"test"), (b"content-type", b"application/json")]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/tasks",
        "raw_path": b"/tasks",
        "root_path": "",
        "query_string": b"",
        "headers": [*headers, (b"content-length", str(len(content)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    messages = [{"type": "http.request", "body": content, "more_body": False}]
    answered = asyncio.Event()
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                answered.set()

    await app(scope, receive, send)
    headers_out = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    return Answer(start["status"], headers_out, b"".join(chunks))


async def burst(apps: list[Any], requests: int, clients: int) -> list[Answer]:
    """`requests` POSTs from `clients` concurrent clients, spread over `apps`."""
    numbers = iter(range(requests))  # shared: each client takes the next number
    answers: list[Answer] = []

    async def client(app: Any) -> None:
        for number in numbers:
            answers.append(await asgi_post(app, {"message": f"burst {number}"}))

    await asyncio.gather(*(client(apps[index % len(apps)]) for index in range(clients)))
    return answers


async def test_a_burst_of_5000_gets_the_bucket_and_its_refill_across_api_processes(
    database_url: str, stores: Stores, namespace: str, db: asyncpg.Connection
) -> None:
    settings = limited(database_url, stores, namespace, rate_limit=f"{RATE_PER_S}/s burst {BUCKET}")
    async with running_apps(settings, 2) as apps:
        began = time.monotonic()
        answers = await burst(apps, BURST_REQUESTS, BURST_CLIENTS)
        elapsed_s = time.monotonic() - began
    accepted = sum(answer.status == 201 for answer in answers)
    refused = [answer for answer in answers if answer.status != 201]
    # The full bucket, plus what refilled while the burst went on: never more,
    # as every token is taken between `began` and the end. A little less (some
    # 30-60 tokens here), as the first token is taken a moment after `began`
    # and the last accepted POSTs are answered a moment after the last token.
    expected = BUCKET + RATE_PER_S * elapsed_s
    report = f"{accepted} accepted, {expected:.0f} expected in {elapsed_s:.2f}s"
    assert len(answers) == BURST_REQUESTS
    assert expected - RATE_PER_S * REFILL_PERIOD_S <= accepted <= expected + 1, report
    assert {answer.status for answer in refused} == {429}, report
    # The next token is 1/200 s away: Retry-After rounds it up to one second.
    assert {answer.headers["retry-after"] for answer in refused} == {"1"}
    assert {answer.headers["content-type"] for answer in refused} == {"application/json"}
    assert {json.loads(answer.body)["detail"] for answer in refused} == {
        "rate limit reached; retry later"
    }
    assert await db.fetchval("SELECT count(*) FROM tasks") == accepted


# QUEUE_MAX_PENDING -------------------------------------------------------------


async def test_queue_max_pending_counts_each_queue_on_its_own(
    database_url: str, stores: Stores, namespace: str, db: asyncpg.Connection
) -> None:
    settings = limited(database_url, stores, namespace, queue_max_pending=3)
    async with app_client(settings) as http:
        into_a = [await http.post("/tasks", json={"message": "a", "queue": "a"}) for _ in range(4)]
        into_b = await http.post("/tasks", json={"message": "b", "queue": "b"})
    assert [answer.status_code for answer in into_a] == [201, 201, 201, 503]
    shed = into_a[-1]
    assert shed.headers["retry-after"] == "1"
    assert "queue 'a'" in shed.json()["detail"] and "QUEUE_MAX_PENDING" in shed.json()["detail"]
    assert into_b.status_code == 201, into_b.text
    rows = await db.fetch("SELECT queue, count(*) AS n FROM tasks GROUP BY queue")
    assert {row["queue"]: row["n"] for row in rows} == {"a": 3, "b": 1}


@pytest.fixture
def admit_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch the intake sends to Redis for admission."""
    batches: list[int] = []
    admit = limits.admit

    async def counting_admit(resources: Any, applicants: Any) -> list[limits.Decision]:
        batches.append(len(applicants))
        return await admit(resources, applicants)

    monkeypatch.setattr(limits, "admit", counting_admit)
    return batches


async def test_concurrent_posts_in_one_batch_do_not_overshoot_queue_max_pending(
    database_url: str,
    stores: Stores,
    namespace: str,
    db: asyncpg.Connection,
    admit_batches: list[int],
) -> None:
    batches = admit_batches
    settings = limited(database_url, stores, namespace, queue_max_pending=5)
    async with app_client(settings) as http:
        answers = await asyncio.gather(*(post(http) for _ in range(20)))
    assert max(batches) > 5, batches  # the limit is reached inside one batch
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [201] * 5 + [503] * 15, codes
    shed = [answer for answer in answers if answer.status_code == 503]
    assert {answer.headers["retry-after"] for answer in shed} == {"1"}
    assert await db.fetchval("SELECT count(*) FROM tasks") == 5


async def test_a_client_known_to_be_out_of_tokens_is_refused_without_asking_redis(
    database_url: str, stores: Stores, namespace: str, admit_batches: list[int]
) -> None:
    asked = admit_batches
    settings = limited(database_url, stores, namespace, rate_limit="12/m burst 1")
    async with app_client(settings) as http:
        assert (await post(http)).status_code == 201
        assert (await post(http)).status_code == 429  # Redis says: empty for ~5 s
        flood = [await post(http) for _ in range(20)]
        assert asked == [1, 1], asked
        assert {answer.status_code for answer in flood} == {429}
        assert all(float(answer.headers["retry-after"]) >= 1 for answer in flood)

        async def admitted_again() -> bool:
            return (await post(http)).status_code == 201

        await wait_for(admitted_again, timeout_s=15, what="a token refilled")
    # Redis decided the refill, not the shortcut.
    assert len(asked) >= 3
