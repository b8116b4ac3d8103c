"""The dashboard in a real browser (Debian's Chromium), against a real API
process and a real worker process on the test's stores."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from pydantic import SecretStr

from app.config import Settings
from app.lifespan import close_resources, open_resources
from auth import service as keys_service
from dashboard.tests.browser import chromium, open_page
from tasks.tests.fixtures import WorkerProcess, wait_status

Stack = tuple[str, httpx.AsyncClient]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def stack(
    spawn_api: Callable[..., Awaitable[str]], spawn_worker: Callable[..., WorkerProcess]
) -> AsyncIterator[Stack]:
    url, _ = await asyncio.gather(
        spawn_api(), asyncio.to_thread(spawn_worker, WORKER_QUEUES="default,other")
    )
    async with httpx.AsyncClient(base_url=url) as http:
        yield url, http


async def create(http: httpx.AsyncClient, **body: Any) -> str:
    response = await http.post("/tasks", json={"message": "from the test", **body})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def row(page: Page, task_id: str) -> Any:
    return page.locator(f'#tasks tr[data-id="{task_id}"]')


async def test_a_new_task_appears_live_and_the_cancel_button_stops_it(
    stack: Stack, browser: Browser, tmp_path: Path, db: asyncpg.Connection
) -> None:
    url, http = stack
    async with open_page(browser, url, tmp_path) as page:
        await page.goto("/dashboard/tasks")
        await expect(page.locator("#live")).to_have_attribute("data-state", "on")
        task_id = await create(http, kind="sleep", payload={"seconds": 30}, message="long nap")
        await expect(row(page, task_id)).to_be_visible()  # no reload
        await expect(row(page, task_id).locator(".badge")).to_have_text("processing")
        await expect(row(page, task_id).locator(".message")).to_have_text("long nap")
        await row(page, task_id).locator("a").click()
        await expect(page.locator("#status")).to_have_text("processing")
        await page.click("#cancel")
        await expect(page.locator("#answer")).to_contain_text("202")
        await expect(page.locator("#status")).to_have_text("canceled")
        await expect(page.locator("#cancel")).to_be_disabled()
    await wait_status(db, [task_id], "canceled")


async def test_retry_a_failed_task_and_retry_dead_letters_in_bulk(
    stack: Stack, browser: Browser, tmp_path: Path, db: asyncpg.Connection
) -> None:
    url, http = stack
    failed = [await create(http, kind="boom", max_attempts=1) for _ in range(3)]
    await wait_status(db, failed, "failed")
    async with open_page(browser, url, tmp_path) as page:
        await page.goto(f"/dashboard/tasks/{failed[0]}")
        await expect(page.locator("#errors")).to_contain_text("ValueError: boom")
        await page.click("#retry")
        await expect(page.locator("#answer")).to_have_text("200: now pending")
        await expect(page.locator("#status")).to_have_text("failed")  # ran again, live
        await expect(page.locator("#errors tbody tr")).to_have_count(1)  # rendered before

        await page.goto("/dashboard/dead")
        for task_id in failed[1:]:
            await page.locator(f'tr[data-id="{task_id}"] input.pick').check()
        await page.click("#retry-selected")
        await expect(page.locator("#answer")).to_have_text("retried 2 of 2")
    redrives = await db.fetch("SELECT redrives FROM tasks WHERE id = ANY($1::uuid[])", failed)
    assert sorted(r["redrives"] for r in redrives) == [1, 1, 1]


async def test_filters_narrow_the_list_and_its_live_rows(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    url, http = stack
    echo = await create(http, kind="echo", queue="other")
    sleep = await create(http, kind="sleep", payload={"seconds": 0})
    async with open_page(browser, url, tmp_path) as page:
        await page.goto("/dashboard/tasks")
        await expect(row(page, echo)).to_be_visible()
        await expect(row(page, sleep)).to_be_visible()
        await page.fill("input[name=kind]", "echo")
        await page.fill("input[name=queue]", "other")
        await page.click("#filters button[type=submit]")
        await expect(page).to_have_url(url + "/dashboard/tasks?kind=echo&queue=other")
        await expect(page.locator("#tasks tbody tr")).to_have_count(1)
        await expect(row(page, echo)).to_be_visible()
        await expect(page.locator("#live")).to_have_attribute("data-state", "on")
        other = await create(http, kind="sleep", queue="other", payload={"seconds": 0})
        matching = await create(http, kind="echo", queue="other")
        await expect(row(page, matching)).to_be_visible()
        await expect(row(page, other)).to_have_count(0)
        await page.goto("/dashboard/tasks?status=failed")  # a task that fails joins it live
        await expect(page.locator("#live")).to_have_attribute("data-state", "on")
        failing = await create(http, kind="boom", max_attempts=1)
        await expect(row(page, failing).locator(".badge")).to_have_text("failed")


async def test_overview_draws_the_chart_and_every_page_and_the_docs_load(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    url, http = stack
    await create(http)
    async with open_page(browser, url, tmp_path) as page:
        await page.goto("/dashboard")
        await expect(page.locator('#queues tr[data-queue="default"]')).to_be_visible()
        await expect(page.locator("#throughput polyline")).to_have_count(3)
        for link in ("Workers", "Schedules", "Topics & queues", "Dead letters", "Tasks"):
            await page.click(f"header nav >> text={link}")
            await expect(page.locator("header nav a.current")).to_have_text(link)
        await page.goto("/dashboard/workers")
        await expect(page.locator("#workers tbody tr[data-worker]")).to_have_count(1)
        await page.goto("/docs")  # the browser reaches no other host: Swagger UI is local
        await expect(page.locator(".swagger-ui .title")).to_contain_text("Taskline")
        await page.goto("/redoc")
        await expect(page.locator("h1")).to_contain_text("Taskline")


async def admin_key(settings: Settings, pepper: str) -> str:
    """An admin key, made as `taskline keys create --scopes admin` makes it."""
    keyed = settings.model_copy(update={"auth": "keys", "auth_pepper": SecretStr(pepper)})
    resources = open_resources(keyed)
    try:
        _, token = await keys_service.create_key(
            resources=resources, owner="ops", scopes=["admin"], expires_at=None
        )
    finally:
        await close_resources(resources)
    return token


async def test_with_keys_on_sign_in_see_the_overview_and_cancel_a_task(
    spawn_api: Callable[..., Awaitable[str]],
    settings: Settings,
    browser: Browser,
    tmp_path: Path,
    db: asyncpg.Connection,
) -> None:
    pepper = secrets.token_hex(32)  # no worker: a task waiting an hour is what gets canceled
    url, admin = await asyncio.gather(
        spawn_api(AUTH="keys", AUTH_PEPPER=pepper), admin_key(settings, pepper)
    )
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": admin}) as http:
        task_id = await create(http, message="later", delay_seconds=3600)
    async with open_page(browser, url, tmp_path) as page:
        await page.goto("/dashboard")  # no key yet: sent to sign in
        await expect(page).to_have_url(re.compile(r"/dashboard/login\?next=%2Fdashboard$"))
        await page.fill("#key", admin)
        await page.click("#signin button[type=submit]")
        await expect(page).to_have_url(url + "/dashboard")
        await expect(page.locator('#queues tr[data-queue="default"]')).to_be_visible()
        await expect(page.locator("#throughput polyline")).to_have_count(3)  # its own fetch
        await page.goto("/dashboard/tasks")
        await expect(page.locator("#live")).to_have_attribute("data-state", "on")  # /events
        await row(page, task_id).locator("a").click()
        await page.click("#cancel")  # PATCH /tasks/{id} with the cookie, from this page
        await expect(page.locator("#answer")).to_have_text("200: now canceled")
        await expect(page.locator("#status")).to_have_text("canceled")
        await page.click("#signout")
        await expect(page).to_have_url(url + "/dashboard/login")
        await page.goto("/dashboard/workers")
        await expect(page).to_have_url(re.compile(r"/dashboard/login\?next="))
    await wait_status(db, [task_id], "canceled")
