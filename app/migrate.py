"""Apply migrations, waiting first for the database to accept connections."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import command
from app.db import driver_options

log = logging.getLogger("taskline.migrate")

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(url: str, *, pooler: str = "none") -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["url"] = url
    config.attributes["pooler"] = pooler
    config.attributes["configure_logging"] = False
    return config


async def _ping(url: str, pooler: str) -> None:
    engine = create_async_engine(url, connect_args=driver_options(pooler))
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


def wait_for_database(url: str, *, pooler: str = "none", timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            asyncio.run(_ping(url, pooler))
            return
        except Exception as error:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"taskline: database not reachable after {timeout_s:.0f}s: {error}"
                ) from error
            log.info("waiting for the database: %s", error)
            time.sleep(1)


def upgrade(url: str, *, revision: str = "head", pooler: str = "none") -> None:
    """`pooler`: DATABASE_POOLER, when `url` is a pooler (see app/db.py)."""
    wait_for_database(url, pooler=pooler)
    command.upgrade(alembic_config(url, pooler=pooler), revision)
