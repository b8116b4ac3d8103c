"""Admission controls: a token bucket per client shared by API processes, and
load shedding on the number of waiting tasks. Nothing is written when refused."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import httpx
import pytest

from app.config import Settings, parse_rate_limit
from tasks.tests.conftest import Stores, WorkerFactory, app_client, make_settings, wait_for


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
