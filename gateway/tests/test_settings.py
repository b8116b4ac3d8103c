"""The gateway group of settings: defaults, the variables read, one-line refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import Settings, load_settings
from tasks.tests.fixtures import ROOT

NAMES = (
    "GATEWAY_TARGET_BASE_URL", "GATEWAY_HOST", "GATEWAY_PORT", "GATEWAY_PATHS",
    "GATEWAY_PATH_PREFIXES", "GATEWAY_LISTED_PRIORITY", "GATEWAY_DEFAULT_PRIORITY",
    "GATEWAY_NORMALIZE_PATHS", "GATEWAY_PASS_THROUGH", "GATEWAY_WAIT_SECONDS",
    "GATEWAY_TTL_SECONDS", "GATEWAY_RETRY_ON", "GATEWAY_MAX_BODY_BYTES",
    "GATEWAY_MAX_REQUEST_BYTES", "GATEWAY_CONNECT_TIMEOUT_SECONDS",
    "GATEWAY_READ_TIMEOUT_SECONDS", "HTTP_ALLOWED_HOSTS",
)  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    found = Settings(_env_file=None)  # type: ignore[call-arg]
    assert found.gateway_target_base_url == "" and found.http_allowed_hosts == ""
    assert (found.gateway_host, found.gateway_port) == ("127.0.0.1", 8001)
    assert (found.gateway_listed_priority, found.gateway_default_priority) == (9, 0)
    assert found.gateway_normalize_paths is True and found.gateway_pass_through == "/health"
    assert (found.gateway_wait_s, found.gateway_ttl_s) == (60, 300)
    assert found.gateway_retry_on == "5xx,connect"
    assert found.gateway_max_body_bytes == 512 * 1024
    assert found.gateway_max_request_bytes == 128 * 1024
    assert (found.gateway_connect_timeout_s, found.gateway_read_timeout_s) == (5, 30)


def test_the_variables_read(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "GATEWAY_TARGET_BASE_URL": "https://api.internal:8443/v1/",
        "GATEWAY_PORT": "9001",
        "GATEWAY_PATHS": "/a,/b",
        "GATEWAY_LISTED_PRIORITY": "0",
        "GATEWAY_DEFAULT_PRIORITY": "9",
        "GATEWAY_NORMALIZE_PATHS": "false",
        "GATEWAY_WAIT_SECONDS": "5",
        "GATEWAY_TTL_SECONDS": "20",
        "GATEWAY_RETRY_ON": "5xx, timeout",
        "GATEWAY_CONNECT_TIMEOUT_SECONDS": "1.5",
        "GATEWAY_READ_TIMEOUT_SECONDS": "9",
        "HTTP_ALLOWED_HOSTS": "api.example.com,[::1]:8080",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    found = Settings(_env_file=None)  # type: ignore[call-arg]
    assert found.gateway_target_base_url == "https://api.internal:8443/v1"  # no final slash
    assert found.gateway_port == 9001 and found.gateway_paths == "/a,/b"
    assert (found.gateway_listed_priority, found.gateway_default_priority) == (0, 9)
    assert found.gateway_normalize_paths is False
    assert (found.gateway_wait_s, found.gateway_ttl_s) == (5, 20)
    assert (found.gateway_connect_timeout_s, found.gateway_read_timeout_s) == (1.5, 9)
    assert found.http_allowed_hosts == "api.example.com,[::1]:8080"


BAD_VALUES = [
    ("GATEWAY_TARGET_BASE_URL", "ftp://x"),
    ("GATEWAY_TARGET_BASE_URL", "http://user@x"),
    ("GATEWAY_TARGET_BASE_URL", "http://x/?q=1"),
    ("GATEWAY_PORT", "0"),
    ("GATEWAY_PATHS", "report"),
    ("GATEWAY_PATH_PREFIXES", "/a,b/"),
    ("GATEWAY_PASS_THROUGH", "health"),
    ("GATEWAY_LISTED_PRIORITY", "10"),
    ("GATEWAY_DEFAULT_PRIORITY", "-1"),
    ("GATEWAY_NORMALIZE_PATHS", "perhaps"),
    ("GATEWAY_WAIT_SECONDS", "0"),
    ("GATEWAY_TTL_SECONDS", "-5"),
    ("GATEWAY_RETRY_ON", "5xx,4xx"),
    ("GATEWAY_MAX_BODY_BYTES", "0"),
    ("GATEWAY_MAX_REQUEST_BYTES", "999999999"),
    ("GATEWAY_CONNECT_TIMEOUT_SECONDS", "0"),
    ("GATEWAY_READ_TIMEOUT_SECONDS", "never"),
    ("HTTP_ALLOWED_HOSTS", "http://example.com"),
    ("HTTP_ALLOWED_HOSTS", "*.example.com"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_a_bad_value_stops_load_settings_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert stopped.value.code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"taskline: invalid setting {name}:"), lines[0]


@pytest.mark.parametrize(
    ("name", "value"), [("GATEWAY_TARGET_BASE_URL", ""), ("GATEWAY_RETRY_ON", "always")]
)
def test_taskline_gateway_stops_with_one_line(name: str, value: str) -> None:
    env = {key: val for key, val in os.environ.items() if key not in NAMES}
    env[name] = value
    done = subprocess.run(
        [sys.executable, "-m", "taskline", "gateway"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith(f"taskline: invalid setting {name}:"), lines
