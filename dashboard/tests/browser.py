"""Debian's Chromium driven by Playwright, for the dashboard's browser tests.

Never `playwright install`: the browser is the system's (`make browser`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

CHROMIUM = Path(os.environ.get("CHROMIUM") or "/usr/bin/chromium")  # `make test CHROMIUM=...`
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000
# Assertions wait as long as actions: a busy machine renders ReDoc in more than 5 s.
expect.set_options(timeout=TIMEOUT_MS)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def open_page(browser: Browser, base_url: str, tmp_path: Path) -> AsyncIterator[Page]:
    """A page on the API; a screenshot in tmp_path if the test fails while it is
    open; and any console error (a refused script or style, a failed call) fails it."""
    context = await browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
        assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
        assert not [e for e in errors if "Uncaught" in e or "Error:" in e], errors
    except BaseException:
        shot = tmp_path / "failure.png"
        await page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the page at failure: {shot}")
        raise
    finally:
        await context.close()
