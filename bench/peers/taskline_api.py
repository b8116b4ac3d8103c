"""Two ways to POST many tasks to Taskline's API that need more than a loop:
POST /tasks/batch, read from the API's own OpenAPI (it may be absent), and wrk."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from harness import BULK_SIZE
from latency import read_answer

BATCH_PATH = "/tasks/batch"
WRK_BODY = '{"message": "Hello World"}'
WRK_SCRIPT = f"""wrk.method = "POST"
wrk.body = '{WRK_BODY}'
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass(frozen=True)
class BatchForm:
    field: str | None  # the body is {field: [task, ...]}, or the list itself when None
    max_items: int


def _resolve(openapi: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def batch_form(openapi: dict[str, Any]) -> BatchForm | None:
    """How this API takes a batch: a JSON list of tasks, or an object with one
    list of them; None when it has no POST /tasks/batch."""
    operation = openapi.get("paths", {}).get(BATCH_PATH, {}).get("post")
    if operation is None:
        return None
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    schema = _resolve(openapi, body)
    candidates = [(None, schema)] + [
        (name, _resolve(openapi, prop)) for name, prop in schema.get("properties", {}).items()
    ]
    for field, found in candidates:
        if found.get("type") == "array":
            return BatchForm(field, int(found.get("maxItems", BULK_SIZE)))
    return None


async def post_batches(
    url: str, form: BatchForm, count: int, clients: Sequence[str] = ("raw", "httpx")
) -> tuple[dict[str, float], int]:
    """`count` tasks in batches by each client, one request at a time: (tasks/s
    by client, batch size). Ids back only (Prefer: return=minimal), as
    PgQueuer's bulk enqueue answers ids. "httpx": through httpx.AsyncClient
    (`json=`); "raw": the same JSON, encoded the same way inside the timing,
    written as bytes on one keep-alive connection, as the latency workload's
    first caller: the API's rate without the HTTP client's own CPU (httpx's is
    about 4 ms a batch of 1,000). The clients take turns, a batch each, each
    batch timed: run one after the other, the first ran slower (the table,
    the WAL and autovacuum catching up with the enqueue workload before)."""
    size = min(BULK_SIZE, form.max_items)
    spent_s = dict.fromkeys(clients, 0.0)
    async with AsyncExitStack() as stack:
        posts = {client: await stack.enter_async_context(_poster(url, client))
                 for client in clients}  # fmt: skip

        async def batch(client: str, first: int, last: int) -> float:
            began = time.perf_counter()
            tasks = [{"message": f"e{n}"} for n in range(first, last)]
            await posts[client](tasks if form.field is None else {form.field: tasks})
            return time.perf_counter() - began

        for client in clients:
            await batch(client, 0, size)  # warm-up
        for turn, first in enumerate(range(0, count, size)):
            for client in clients[turn % 2 :] + clients[: turn % 2]:  # who goes first turns too
                spent_s[client] += await batch(client, first, min(count, first + size))
    return {client: count / spent for client, spent in spent_s.items()}, size


Post = Callable[[Any], Awaitable[None]]


@asynccontextmanager
async def _poster(url: str, client: str) -> AsyncIterator[Post]:
    if client == "httpx":
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:

            async def through_httpx(body: Any) -> None:
                answer = await http.post(BATCH_PATH, json=body, headers=PREFER_MINIMAL)
                answer.raise_for_status()

            yield through_httpx
        return
    where = urlsplit(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)

    async def as_bytes(body: Any) -> None:
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        encoded = content.encode()
        writer.write(b"%s%d\r\n\r\n%s" % (_RAW_HEAD, len(encoded), encoded))
        status, answer = await read_answer(reader)
        if status != 200:
            raise RuntimeError(f"POST {BATCH_PATH} answered {status}: {answer[:200]!r}")

    try:
        yield as_bytes
    finally:
        writer.close()


PREFER_MINIMAL = {"Prefer": "return=minimal"}
_RAW_HEAD = (
    f"POST {BATCH_PATH} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
    "prefer: return=minimal\r\ncontent-length: "
).encode()


def run_wrk(url: str, seconds: float, work_dir: Path) -> dict[str, Any]:
    """wrk -t1 -c32 against POST /tasks: requests/s, and its latency percentiles."""
    script = work_dir / "post.lua"
    script.write_text(WRK_SCRIPT)
    argv = ["wrk", "-t1", "-c32", f"-d{seconds:g}s", "--latency", "-s", str(script), f"{url}/tasks"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=True)
    text = done.stdout
    found: dict[str, Any] = {"req_per_s": float(_grab(r"Requests/sec:\s+([\d.]+)", text))}
    found["non_2xx"] = int(_grab(r"Non-2xx or 3xx responses:\s+(\d+)", text, "0"))
    for name, label in (("p50_ms", "50%"), ("p99_ms", "99%")):
        found[name] = _ms(_grab(rf"^\s+{label}\s+(\S+)$", text, "nan"))
    return found


def _grab(pattern: str, text: str, default: str | None = None) -> str:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        if default is None:
            raise ValueError(f"wrk printed no {pattern!r}:\n{text}")
        return default
    return match.group(1)


def _ms(value: str) -> float:
    """wrk's durations: 850.00us, 1.23ms, 2.00s."""
    for unit, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * scale
    return float("nan")
