"""Alembic environment: async engine from the DATABASE_URL setting.

Tests and the CLI may hand in a URL through `config.attributes["url"]`.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import context
from app.config import load_settings
from app.db import Base, driver_options
from auth import models as auth_models  # noqa: F401  (registers the tables)
from schedules import models as schedule_models  # noqa: F401  (registers the tables)
from tasks import models  # noqa: F401  (registers the tables on Base.metadata)
from topics import models as topic_models  # noqa: F401
from workflows import models as workflow_models  # noqa: F401

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url")
    return str(url) if url else load_settings().db_url


def _pooler() -> str:
    pooler = config.attributes.get("pooler")
    return str(pooler) if pooler else load_settings().database_pooler


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(_url(), connect_args=driver_options(_pooler()))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
