"""`taskline keys create|ls|revoke`: straight against the database, before any key exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from app.config import Settings
from auth.tests.conftest import bearer
from tasks.tests.fixtures import plain_dsn

ROOT = Path(__file__).resolve().parents[2]


def taskline(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    assert settings.auth_pepper is not None
    variables = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AUTH", "TASKLINE"))},
        "DATABASE_URL": plain_dsn(settings.db_url),
        "REDIS_URL": settings.cache_url,
        "REDIS_CLUSTER": str(settings.redis_cluster).lower(),
        "REDIS_QUEUE_NAME": settings.redis_queue_name,
        "AUTH": "keys",
        "AUTH_PEPPER": settings.auth_pepper.get_secret_value(),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "taskline", "keys", *args],
        cwd=ROOT, env=variables, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def test_the_first_admin_key_is_made_on_the_command_line(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    made = taskline(settings, "create", "--owner", "ops", "--scopes", "admin")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("tl_") and "shown this once" in made.stderr
    assert (await client.get("/keys", headers=bearer(token))).status_code == 200

    reader = taskline(settings, "create", "--owner", "acme", "--scopes", "tasks:read,queues:read",
                      "--expires", "30d", "--json")  # fmt: skip
    assert reader.returncode == 0, reader.stderr
    created = json.loads(reader.stdout)
    assert (created["owner"], created["scopes"]) == ("acme", ["queues:read", "tasks:read"])
    assert created["expires_at"] is not None

    listed = taskline(settings, "ls")
    assert listed.returncode == 0
    assert created["id"] in listed.stdout and "acme" in listed.stdout
    assert created["key"] not in listed.stdout

    revoked = taskline(settings, "revoke", created["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert (await client.get("/tasks", headers=bearer(created["key"]))).status_code == 401
    shown = json.loads(taskline(settings, "ls", "--all", "--json").stdout)
    assert [key["revoked_at"] is not None for key in shown] == [True, False]


def test_mistakes_end_with_one_line_and_an_exit_code(settings: Settings) -> None:
    unknown = taskline(settings, "revoke", "0123456789abcdef")
    bad_scope = taskline(settings, "create", "--owner", "a", "--scopes", "everything")
    no_pepper = taskline(settings, "ls", AUTH_PEPPER="")
    off = taskline(settings, "create", "--owner", "a", "--scopes", "admin", AUTH="none",
                   AUTH_PEPPER="")  # fmt: skip
    assert (unknown.returncode, bad_scope.returncode, no_pepper.returncode) == (1, 2, 2)
    assert off.returncode == 1
    assert "not found" in unknown.stderr and "scopes are" in bad_scope.stderr
    assert "AUTH_PEPPER" in no_pepper.stderr and "AUTH_PEPPER" in off.stderr
    for done in (unknown, no_pepper, off):
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
