"""The dashboard's pages, rendered on real stores (no browser: see test_browser.py)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable

import asyncpg
import httpx

from app.config import Settings
from conftest import WorkerFactory
from tasks.tests.fixtures import app_client, wait_for, wait_status

PAGES = ["", "/tasks", "/dead", "/workers", "/schedules", "/topics"]


async def post(http: httpx.AsyncClient, message: str = "m", **body: object) -> str:
    response = await http.post("/tasks", json={"message": message, **body})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _equals(found: Awaitable[str], wanted: str) -> bool:
    return await found == wanted


def ids_in(html: str) -> list[str]:
    return re.findall(r'<tr data-id="([0-9a-f-]{36})"', html)


async def test_every_page_renders_with_a_policy_without_inline_code(settings: Settings) -> None:
    async with app_client(settings) as http:
        for path in PAGES:
            response = await http.get("/dashboard" + path)
            assert response.status_code == 200, (path, response.text)
            assert response.headers["content-type"].startswith("text/html")
            policy = response.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "unsafe-inline" not in policy
            assert "<script>" not in response.text and " style=" not in response.text
            for asset in re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', response.text):
                assert (await http.get(asset)).status_code == 200, asset
        assert (await http.get("/dashboard/static/nope.js")).status_code == 404


async def test_overview_shows_each_queue_and_its_failures(
    settings: Settings, start_full_worker: WorkerFactory, db: asyncpg.Connection
) -> None:
    async with app_client(settings) as http:
        await post(http, queue="mail")
        failed = await post(http, kind="boom", queue="billing", max_attempts=1)
        await start_full_worker(worker_queues="mail,billing")
        await wait_status(db, [failed], "failed")

        async def failed_last_hour() -> str:  # a worker sends its counts twice a second
            html = (await http.get("/dashboard")).text
            billing = html[html.index('<tr data-queue="billing">') :].split("</tr>")[0]
            return re.findall(r'<td class="num[^"]*">([^<]*)<', billing)[3]

        await wait_for(lambda: _equals(failed_last_hour(), "1"), what="billing's failure")
        html = (await http.get("/dashboard")).text
        chart = (await http.get("/dashboard/throughput")).json()
    assert '<tr data-queue="mail">' in html
    assert len(chart["minutes"]) == 16
    assert sum(chart["series"]["created"]) == 2 and sum(chart["series"]["failed"]) == 1


async def test_task_list_filters_and_pages(settings: Settings) -> None:
    async with app_client(settings) as http:
        mine = [await post(http, owner="ann", queue="q1") for _ in range(3)]
        await post(http, owner="bob", queue="q1")
        await post(http, owner="ann", queue="q2")
        html = (await http.get("/dashboard/tasks?owner=ann&queue=q1")).text
        assert ids_in(html) == mine[::-1]
        everything = ids_in((await http.get("/dashboard/tasks")).text)
        assert len(everything) == 5
        assert (await http.get("/dashboard/tasks?status=nope")).status_code == 422
        assert (await http.get("/dashboard/tasks?queue=bad%20name")).status_code == 422
        first = (await http.get("/dashboard/tasks", params={"queue": "q1"})).text
        assert 'id="next"' not in first


async def test_task_list_pages_by_keyset(settings: Settings) -> None:
    async with app_client(settings) as http:
        made = [await post(http) for _ in range(55)]
        first = (await http.get("/dashboard/tasks")).text
        link = re.search(r'id="next" href="([^"]+)"', first)
        assert link is not None
        second = (await http.get(link.group(1).replace("&amp;", "&"))).text
    assert ids_in(first) + ids_in(second) == made[::-1]
    assert 'data-live="off"' in second  # an older page does not take live rows


async def test_a_cursor_that_is_no_id_is_refused_not_a_server_error(settings: Settings) -> None:
    async with app_client(settings) as http:
        for page in ("/schedules", "/topics"):
            refused = await http.get(f"/dashboard{page}", params={"cursor": "a\x00b"})
            assert refused.status_code == 422, (page, refused.text)
            assert (
                await http.get(f"/dashboard{page}", params={"cursor": "a.b"})
            ).status_code == 200


async def test_task_detail_shows_every_attempt(
    settings: Settings, start_full_worker: WorkerFactory, db: asyncpg.Connection
) -> None:
    async with app_client(settings) as http:
        task_id = await post(http, "kaboom", kind="boom", max_attempts=2, payload={"n": 7})
        await start_full_worker()
        await wait_status(db, [task_id], "failed")
        html = (await http.get(f"/dashboard/tasks/{task_id}")).text
        missing = await http.get(f"/dashboard/tasks/{uuid.uuid4()}")
        bad = await http.get("/dashboard/tasks/not-a-uuid")
    assert html.count("ValueError: boom: kaboom") == 2
    assert "&#34;n&#34;: 7" in html or '"n": 7' in html
    assert f'data-id="{task_id}"' in html and 'id="cancel"' in html
    assert missing.status_code == 404 and missing.json()["detail"]
    assert bad.status_code == 422


async def test_workers_schedules_and_topics_pages(
    settings: Settings, start_full_worker: WorkerFactory
) -> None:
    worker = await start_full_worker()
    async with app_client(settings) as http:
        schedule = {"id": "nightly", "kind": "echo", "cron": "0 2 * * *"}
        assert (await http.post("/schedules", json=schedule)).status_code == 201
        assert (await http.post("/topics", json={"id": "orders"})).status_code == 201
        body = {"id": "eu-orders", "topic_id": "orders"}
        assert (await http.post("/queues", json=body)).status_code == 201
        published = await http.post("/topics/orders/messages", json={"data": 1})
        assert published.status_code == 201
        lease = {"max_messages": 5, "consumer": "billing-1"}
        leased = await http.post("/queues/eu-orders/lease", json=lease)
        assert len(leased.json()["messages"]) == 1

        html = ""

        async def worker_listed() -> bool:
            nonlocal html
            html = (await http.get("/dashboard/workers")).text
            return worker.worker_id in html

        await wait_for(worker_listed, timeout_s=20, what="the worker on /dashboard/workers")
        schedules = (await http.get("/dashboard/schedules")).text
        topics = (await http.get("/dashboard/topics")).text
    assert f'data-worker="{worker.worker_id}"' in html and "0 / 10" in html
    assert 'data-schedule="nightly"' in schedules and "0 2 * * *" in schedules
    assert 'data-topic="orders"' in topics and 'data-queue="eu-orders"' in topics
    consumer = topics[topics.index('data-consumer="eu-orders/billing-1"') :].split("</tr>")[0]
    assert '<td class="num leased">1</td>' in consumer


def row_of(html: str, attribute: str) -> dict[str, str]:
    """The cells of the table row with this data attribute, by their last class."""
    row = html[html.index(attribute) :].split("</tr>")[0]
    cells = re.findall(r'<td class="(?:num )?([a-z-]+)(?: bad)?">([^<]*)</td>', row)
    return {name: text.strip() for name, text in cells}


async def test_topics_page_counts_messages_and_shows_consumers(settings: Settings) -> None:
    async with app_client(settings) as http:
        for body in ({"id": "dead"}, {"id": "quiet"}, {"id": "work", "dead_queue_id": "dead",
                                                       "message_max_deliveries": 1}):  # fmt: skip
            assert (await http.post("/queues", json=body)).status_code == 201
        put = {"messages": [{"data": n} for n in range(5)]}
        assert (await http.post("/queues/work/messages", json=put)).status_code == 201
        lease = {"max_messages": 3, "consumer": "billing-1"}
        leased = (await http.post("/queues/work/lease", json=lease)).json()["messages"]
        receipt = {"receipt_handle": leased[0]["receipt_handle"]}
        nacked = await http.post(f"/messages/{leased[0]['id']}/nack", json=receipt)
        assert nacked.status_code == 204  # its only delivery: to the dead queue
        idle = await http.post("/queues/quiet/lease", json={"consumer": "idle-1"})
        assert idle.json() == {"messages": []}
        html = (await http.get("/dashboard/topics")).text
    work, dead = row_of(html, 'data-queue="work"'), row_of(html, 'data-queue="dead"')
    assert (work["undelivered"], work["leased"], work["dead"]) == ("2", "2", "1")
    assert work["oldest"].endswith("s") and (dead["undelivered"], dead["leased"]) == ("1", "0")
    billing = row_of(html, 'data-consumer="work/billing-1"')
    assert billing["leased"] == "2" and billing["last-lease"].endswith("s ago")
    assert billing["last-poll"].endswith("s ago")
    idle_row = row_of(html, 'data-consumer="quiet/idle-1"')
    assert (idle_row["leased"], idle_row["last-lease"]) == ("0", "-")
    assert idle_row["last-poll"].endswith("s ago")
