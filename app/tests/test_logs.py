"""Log lines: text or one JSON object per line; a line about a task carries its
task_id, kind, queue, attempt and worker_id, read only for lines written."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.logs import JsonFormatter, TaskContextFilter, TextFormatter, bind_task, bind_worker

ROOT = Path(__file__).resolve().parents[2]


class Subject:
    """A task as the worker binds it; counts how often its fields are asked for."""

    def __init__(self) -> None:
        self.asked = 0

    def log_fields(self) -> dict[str, Any]:
        self.asked += 1
        return {"task_id": "t-1", "kind": "resize", "queue": "batch", "attempt": 2}


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


def make_logger(stream: io.StringIO, formatter: logging.Formatter) -> logging.Logger:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(TaskContextFilter())
    logger = logging.getLogger(f"test.logs.{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def in_task(logger: logging.Logger, subject: Subject, *lines: tuple[int, str]) -> None:
    """Log as a worker's task runner would, in a context of its own."""

    def run() -> None:
        bind_worker("host:1:abc")
        bind_task(subject)
        for level, message in lines:
            logger.log(level, message)

    contextvars.copy_context().run(run)


@pytest.fixture
def json_logger(stream: io.StringIO) -> logging.Logger:
    return make_logger(stream, JsonFormatter())


def test_json_is_one_object_per_line_with_the_task_fields(
    json_logger: logging.Logger, stream: io.StringIO
) -> None:
    in_task(json_logger, Subject(), (logging.WARNING, "failed: ValueError: no"))
    try:
        raise RuntimeError("first line\nsecond line")
    except RuntimeError:
        json_logger.exception("outside any task")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "failed: ValueError: no"
    assert first["level"] == "WARNING" and first["logger"] == json_logger.name
    assert {key: first[key] for key in ("task_id", "kind", "queue", "attempt", "worker_id")} == {
        "task_id": "t-1",
        "kind": "resize",
        "queue": "batch",
        "attempt": 2,
        "worker_id": "host:1:abc",
    }
    assert first["time"].endswith("+00:00")
    assert "task_id" not in second and "second line" in second["exc_info"]


def test_text_lines_end_with_the_task_fields(stream: io.StringIO) -> None:
    in_task(make_logger(stream, TextFormatter()), Subject(), (logging.INFO, "timed out after 5s"))
    [line] = stream.getvalue().splitlines()
    assert " INFO    " in line and "timed out after 5s" in line
    assert line.endswith("[task_id=t-1 kind=resize queue=batch attempt=2 worker_id=host:1:abc]")


def test_fields_are_read_only_for_lines_that_are_written(
    json_logger: logging.Logger, stream: io.StringIO
) -> None:
    subject = Subject()
    in_task(json_logger, subject, *[(logging.DEBUG, "filtered out")] * 100)
    assert subject.asked == 0 and stream.getvalue() == ""
    in_task(json_logger, subject, (logging.INFO, "written"))
    assert subject.asked == 1


def test_extra_wins_over_the_bound_task(json_logger: logging.Logger, stream: io.StringIO) -> None:
    def run() -> None:
        bind_task(Subject())
        json_logger.info("about another", extra={"task_id": "t-2", "kind": "echo"})

    contextvars.copy_context().run(run)
    line = json.loads(stream.getvalue())
    assert (line["task_id"], line["kind"], line["queue"]) == ("t-2", "echo", "batch")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_the_api_process_and_its_access_log_use_log_format(tmp_path: Path, log_format: str) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "API_PORT": str(port),
        "LOG_FORMAT": log_format,
        "ACCESS_LOG": "true",
    }
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        api = subprocess.Popen(
            [sys.executable, "-m", "taskline", "api"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"http://127.0.0.1:{port}/health"):
            assert api.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
    finally:
        api.terminate()
        api.wait(30)
    lines = log_path.read_text().splitlines()
    assert any("Uvicorn running" in line for line in lines), lines
    if log_format == "json":
        entries = [json.loads(line) for line in lines]  # every line is one JSON object
        access = [e for e in entries if e["logger"] == "uvicorn.access"]
        assert {"method": "GET", "path": "/health", "status": 200}.items() <= access[0].items()
    else:
        assert any("uvicorn.access:" in line and '"GET /health HTTP/1.1" 200' in line
                   for line in lines), lines  # fmt: skip
        assert not any(line.lstrip().startswith("{") for line in lines), lines


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
