"""A revoked key stops working everywhere: on this API process at once, on a
second API process (a real uvicorn process) within a second, and within a
second too when the listener cannot hear Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.lifespan import Resources, close_resources, open_resources
from auth import repository, service
from auth.exceptions import InvalidKey
from auth.keyring import KeyRing
from auth.tests.conftest import Keys, bearer
from tasks.tests.fixtures import free_port, plain_dsn, wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def second_api(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """`uvicorn main:app` as its own process on these settings; its URL."""
    assert settings.auth_pepper is not None
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": plain_dsn(settings.db_url),
        "REDIS_URL": settings.cache_url,
        "REDIS_CLUSTER": str(settings.redis_cluster).lower(),
        "REDIS_QUEUE_NAME": settings.redis_queue_name,
        "AUTH": "keys",
        "AUTH_PEPPER": settings.auth_pepper.get_secret_value(),
        "LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


async def test_a_revoked_key_stops_working_on_a_second_api_process_within_a_second(
    second_api: str, client: httpx.AsyncClient, keys: Keys
) -> None:
    key_id, token = await keys.make("a", "tasks:read")
    admin = bearer(await keys.token("ops", "admin"))
    async with httpx.AsyncClient(base_url=second_api) as other:
        # The second process has the key in its cache now (and hears Redis).
        for _ in range(3):
            assert (await other.get("/tasks", headers=bearer(token))).status_code == 200
        revoked = await client.delete(f"/keys/{key_id}", headers=admin)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        # This process at once; the other one within a second of the answer.
        assert (await client.get("/tasks", headers=bearer(token))).status_code == 401

        async def refused() -> bool:
            return (await other.get("/tasks", headers=bearer(token))).status_code == 401

        await wait_for(refused, timeout_s=1.0, what="the second API process to refuse the key")


async def test_without_redis_a_cached_key_is_dropped_within_a_second(
    settings: Settings, keys: Keys
) -> None:
    """An API process whose Redis is unreachable: the listener never hears it, so a
    revoked key (revoked here without any announcement) is refused within 1 s."""
    cut_off = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    resources: Resources = open_resources(cut_off)
    keyring = KeyRing(resources)
    keyring.start()
    try:
        key_id, token = await keys.make("a", "tasks:read")
        caller = await service.authenticate(keyring=keyring, settings=cut_off, token=token)
        assert caller.owner == "a"
        async with resources.sessionmaker() as session:
            await repository.revoke_key(session=session, key_id=key_id)

        async def refused() -> bool:
            try:
                await service.authenticate(keyring=keyring, settings=cut_off, token=token)
            except InvalidKey:
                return True
            return False

        await wait_for(refused, timeout_s=1.0, what="the revoked key to be refused")
    finally:
        await keyring.close()
        await close_resources(resources)
