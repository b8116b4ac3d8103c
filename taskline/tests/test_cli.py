"""The `taskline` command as a subprocess against a real `taskline api` process:
what it prints, that --json parses, and the exit codes scripts rely on."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from taskline.cli import main
from taskline.tests.conftest import SCRIPT
from tasks.tests.fixtures import WorkerProcess, free_port


def taskline(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The `taskline` command as its own process (a handful per test: each costs ~0.5 s)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKLINE_")}
    env["TASKLINE_URL"] = url
    return subprocess.run(
        [str(SCRIPT), *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """The same command run in this process (its whole main(), exit code included)."""

    def run(url: str, *args: str) -> Ran:
        try:
            main([*args, "--url", url])
        except SystemExit as stop:
            code = stop.code
        captured = capsys.readouterr()
        assert isinstance(code, int), code
        return Ran(code, captured.out, captured.err)

    return run


def test_submit_get_ls_cancel_retry_queues(api: str, worker: None, cli: Callable[..., Ran]) -> None:
    def ok(*args: str) -> str:
        done = cli(api, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def as_json(*args: str) -> Any:
        return json.loads(ok(*args, "--json"))

    waited = taskline(api, "submit", "echo", "--message", "hello", "--wait", "--json")
    assert waited.returncode == 0, waited.stderr
    done = json.loads(waited.stdout)
    assert (done["status"], done["result"]) == ("completed", {"message": "hello"})
    assert f"id        {done['id']}" in ok("get", done["id"])

    later = ok("submit", "echo", "-m", "later", "--delay", "3600", "--priority", "2").strip()
    assert uuid.UUID(later)  # alone on stdout, for `ID=$(taskline submit ...)`
    shown = as_json("get", later)
    assert (shown["status"], shown["priority"]) == ("pending", 2)
    assert ok("cancel", later) == f"canceled {later}\n"
    assert as_json("retry", later)["redrives"] == 1  # pending again, then run

    listed = as_json("ls", "--limit", "2")
    assert [task["id"] for task in listed] == [later, done["id"]]
    table = ok("ls", "--status", "completed", "--kind", "echo").splitlines()
    assert table[0].startswith("ID") and any(line.startswith(done["id"]) for line in table)
    assert "default" in {queue["name"] for queue in as_json("queues")}
    assert "default" in ok("queues")

    finished = cli(api, "cancel", done["id"])
    assert finished.returncode == 1 and "409" in finished.stderr


def test_exit_codes(api: str, cli: Callable[..., Ran]) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    as_processes = [
        (["get", str(uuid.uuid4())], 1, "404"),
        (["submit"], 2, "KIND"),
        (["get", str(uuid.uuid4()), "--url", nowhere], 3, "reach"),
    ]
    for args, code, said in as_processes:
        done: Ran | subprocess.CompletedProcess[str] = taskline(api, *args)
        assert (done.returncode, done.stdout) == (code, ""), (args, done.stderr)
        assert said in done.stderr, (args, done.stderr)
    in_process = [
        (["get", "not-a-uuid"], 1, "422"),
        (["submit", "no_such_kind"], 1, "422"),
        (["retry", str(uuid.uuid4())], 1, "404"),
        (["submit", "echo", "--payload", "[1]"], 2, "JSON object"),
        (["submit", "echo", "--payload", "@/no/such/file"], 2, "cannot read"),
        (["submit", "echo", "--priority", "high"], 2, "invalid int"),
        (["retry"], 2, "--failed"),
        (["submit", "echo", "--timeout", "5"], 2, "--wait"),
        (["ls", "--limit", "0"], 2, "--limit"),
    ]
    for args, code, said in in_process:
        done = cli(api, *args)
        assert (done.returncode, done.stdout) == (code, ""), (args, done.stderr)
        assert said in done.stderr, (args, done.stderr)
    assert cli("ftp://example", "ls").returncode == 2
    assert cli(nowhere, "queues").returncode == 3


async def test_submit_from_file_sums_up_what_was_accepted_and_refused(
    api: str, tmp_path: Path, db: asyncpg.Connection
) -> None:
    lines = [
        '{"message": "one"}',
        '{"message": "two", "kind": "sleep", "payload": {"seconds": 1}}',
        "not json",
        '{"message": "x", "kind": "no_such_kind"}',
        "",
        '{"message": "y", "priority": 42}',
        "[1, 2]",
        '{"message": "three", "queue": "batch"}',
    ]
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    done = taskline(api, "submit", "--from-file", str(path), "--json")
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert summary["accepted"] == 3
    assert summary["refused"] == {"422": 2, "not JSON": 2}
    assert [failure["at"] for failure in summary["failures"]] == [
        "line 3", "line 4", "line 6", "line 7",
    ]  # fmt: skip
    assert await db.fetchval("SELECT count(*) FROM tasks") == 3

    piped = taskline(api, "submit", "--from-file", "-", stdin='{"message": "four"}\n')
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith("submitted 1 of 1")


async def test_submit_from_file_sends_the_lines_in_batches(
    api: str, tmp_path: Path, db: asyncpg.Connection
) -> None:
    lines = [json.dumps({"message": f"m{n}", "idempotency_key": f"k{n}"}) for n in range(2500)]
    lines[1200] = '{"message": "x", "priority": 42}'
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    done = taskline(api, "submit", "--from-file", str(path), "--json")
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["accepted"], summary["refused"]) == (2499, {"422": 1})
    assert summary["failures"][0]["at"] == "line 1201"
    assert "body.tasks.200.priority" in summary["failures"][0]["detail"]
    # One INSERT per request of 1,000 lines: one transaction time each
    assert await db.fetchval("SELECT count(DISTINCT created_at) FROM tasks") == 3
    again = taskline(api, "submit", "--from-file", str(path), "--batch-size", "500", "--json")
    assert json.loads(again.stdout)["accepted"] == 2499  # replayed: each key is taken
    assert await db.fetchval("SELECT count(*) FROM tasks") == 2499
    wrong = taskline(api, "submit", "--from-file", str(path), "--batch-size", "1001")
    assert wrong.returncode == 2 and "--batch-size must be 1..1000" in wrong.stderr
    nowhere = taskline(f"http://127.0.0.1:{free_port()}", "submit", "--from-file", str(path))
    assert nowhere.returncode == 3, nowhere.stderr
    assert "stopped: at line 1: cannot reach" in nowhere.stdout


async def test_retry_failed_sends_every_failed_task_round_again(
    api: str, worker: None, db: asyncpg.Connection, cli: Callable[..., Ran]
) -> None:
    for n in range(2):
        failed = cli(api, "submit", "boom", "-m", f"b{n}", "--max-attempts", "1", "--wait")
        assert failed.returncode == 4, failed.stderr  # --wait: it ended failed
        assert "failed" in failed.stdout
    retried = taskline(api, "retry", "--failed", "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout) == {
        "accepted": 2, "refused": {}, "failures": [], "stopped": None,
    }  # fmt: skip
    redrives = await db.fetch("SELECT redrives FROM tasks WHERE kind = 'boom'")
    assert [row["redrives"] for row in redrives] == [1, 1]


def test_top_and_ls_follow(api: str, cli: Callable[..., Ran]) -> None:
    view = cli(api, "top", "--count", "1")
    assert view.returncode == 0 and "QUEUE" in view.stdout and "default" in view.stdout
    assert "no live worker" in view.stdout
    snapshot = json.loads(cli(api, "top", "--count", "1", "--json").stdout)
    assert "default" in {queue["name"] for queue in snapshot["queues"]}
    assert snapshot["workers"] == []

    env = {**os.environ, "TASKLINE_URL": api}
    command = [str(SCRIPT), "ls", "--follow", "--json", "--interval", "0.2"]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as follow:
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in follow.stdout or []])
        reader.start()
        try:
            created = httpx.post(api + "/tasks", json={"message": "new"}, timeout=5).json()
            seen = json.loads(lines.get(timeout=30))
            assert (seen["id"], seen["status"]) == (created["id"], "pending")
            httpx.patch(api + f"/tasks/{created['id']}", json={"status": "canceled"}, timeout=5)
            seen = json.loads(lines.get(timeout=30))  # the same task again: its status changed
            assert (seen["id"], seen["status"]) == (created["id"], "canceled")
        finally:
            follow.send_signal(signal.SIGINT)
            assert follow.wait(30) == 0  # Ctrl-C is how one leaves --follow
            reader.join(10)


def test_top_shows_each_live_worker(api: str, spawn_worker: Callable[..., WorkerProcess]) -> None:
    """`top --count 1` in its own process, as a script runs it, against a real worker."""
    worker = spawn_worker(WORKER_QUEUES="default,mail")
    deadline = time.monotonic() + 30
    while not (listed := httpx.get(api + "/workers", timeout=5).json()["workers"]):
        assert worker.process.poll() is None, worker.log()
        assert time.monotonic() < deadline, "the worker did not report within 30 s"
        time.sleep(0.05)
    [worker_id] = [entry["id"] for entry in listed]
    view = taskline(api, "top", "--count", "1")
    assert view.returncode == 0, view.stderr
    assert "WORKER" in view.stdout and "BUSY/SLOTS" in view.stdout
    [row] = [line for line in view.stdout.splitlines() if worker_id in line]
    assert "default,mail" in row and "0/10" in row and "ago" in row
    snapshot = json.loads(taskline(api, "top", "--count", "1", "--json").stdout)
    assert [(w["id"], w["slots_total"]) for w in snapshot["workers"]] == [(worker_id, 10)]
