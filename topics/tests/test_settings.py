"""The topics group of settings: defaults, the variables read, one-line refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import Settings, load_settings
from tasks.tests.fixtures import ROOT

NAMES = ("RECEIPT_HANDLE_SECRET", "LONG_POLL_MAX_WAITERS")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)


def test_defaults_and_the_variables_read(monkeypatch: pytest.MonkeyPatch) -> None:
    found = Settings(_env_file=None)  # type: ignore[call-arg]
    assert found.receipt_handle_secret is None and found.long_poll_max_waiters == 100
    monkeypatch.setenv("RECEIPT_HANDLE_SECRET", "x" * 32)
    monkeypatch.setenv("LONG_POLL_MAX_WAITERS", "7")
    found = Settings(_env_file=None)  # type: ignore[call-arg]
    assert found.receipt_handle_secret is not None
    assert found.receipt_handle_secret.get_secret_value() == "x" * 32
    assert "x" * 32 not in repr(found)  # never printed
    assert found.long_poll_max_waiters == 7
    monkeypatch.setenv("RECEIPT_HANDLE_SECRET", "")
    assert Settings(_env_file=None).receipt_handle_secret is None  # type: ignore[call-arg]


BAD_VALUES = [
    ("RECEIPT_HANDLE_SECRET", "too short"),
    ("LONG_POLL_MAX_WAITERS", "0"),
    ("LONG_POLL_MAX_WAITERS", "many"),
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
    if name == "RECEIPT_HANDLE_SECRET":
        assert value not in lines[0]  # a secret is not echoed


def test_a_short_secret_stops_the_api_with_one_line() -> None:
    env = {key: val for key, val in os.environ.items() if key not in NAMES}
    env["RECEIPT_HANDLE_SECRET"] = "short"
    done = subprocess.run(
        [sys.executable, "-c", "import main"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("taskline: invalid setting RECEIPT_HANDLE_SECRET:"), lines[0]
    assert "32 characters" in lines[0] and "short" not in lines[0]
