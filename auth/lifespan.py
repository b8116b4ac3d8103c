"""The KeyRing of an API process, opened and closed with the app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.config import Settings, is_loopback
from auth.keyring import KeyRing

log = logging.getLogger("taskline.auth")


@asynccontextmanager
async def keyring_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Needs app.state.resources (open them first)."""
    settings: Settings = app.state.settings
    keyring = KeyRing(app.state.resources)
    app.state.keyring = keyring
    if settings.auth == "keys":
        keyring.start()
    elif not is_loopback(settings.api_host):
        log.warning(
            "AUTH=none on API_HOST=%s (ALLOW_UNAUTHENTICATED=true): anyone who reaches this"
            " port may read and change every task",
            settings.api_host,
        )
    try:
        yield
    finally:
        await keyring.close()
