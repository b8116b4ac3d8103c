"""How many tasks per second does one API process accept, and what do the
admission controls cost?

Runs `taskline api` as a process; N concurrent clients POST `echo` tasks, with
no admission controls and with all of them on (RATE_LIMIT and QUEUE_MAX_PENDING
too high to refuse anything, FAIRNESS=levels, KIND_RULES), alternately for
`--rounds` rounds, the same bodies (with an `owner`) each time. Reports tasks/s,
answer times and the API process's CPU time per POST, and the ratio on/off of
the medians. `raw` clients (the default) write requests as bytes on keep-alive
connections; `httpx` clients cost so much CPU that they, not the API, set the
pace. Then what a refusal costs (tiny RATE_LIMIT: 429, tiny QUEUE_MAX_PENDING:
503), one request at a time: the server's time plus the loopback; beside it,
GET /health, what any request costs.

    .venv/bin/python bench/enqueue.py [--tasks 5000] [--clients 50]
        [--client raw|httpx] [--controls on|off|both] [--rounds 3] [--refusals 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from statistics import median
from typing import Any

import asyncpg
import httpx
from common import Stack, free_port, percentile, stack, start_api
from latency import read_answer, wait_ready

WARM_UP = 200
OWNERS = 10
CONTROLS: dict[str, dict[str, str]] = {
    "off": {},
    "on": {
        "RATE_LIMIT": "1000000/s",
        "QUEUE_MAX_PENDING": "1000000",
        "FAIRNESS": "levels",
        "KIND_RULES": json.dumps({"echo": {"priority": 3}}),
    },
}
REFUSALS: dict[int, dict[str, str]] = {
    429: {"RATE_LIMIT": "1/m burst 1"},
    503: {"QUEUE_MAX_PENDING": "1"},  # and no worker: the queue stays full
}

HEAD = b"POST /tasks HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
HEALTH = b"GET /health HTTP/1.1\r\nhost: bench\r\n\r\n"

Answers = list[tuple[int, float]]  # (status, answer time in ms) per POST
Send = Callable[[int, int], Awaitable[Answers]]  # (port, POSTs) -> answers


@dataclass(frozen=True)
class Run:
    elapsed_s: float
    answers: Answers
    api_cpu_ms: float  # the API process's, over the whole run

    def ms(self, status: int) -> list[float]:
        return [ms for code, ms in self.answers if code == status]

    @property
    def cpu_ms_per_post(self) -> float:
        return self.api_cpu_ms / len(self.answers)

    @property
    def tasks_per_s(self) -> float:
        return len(self.ms(201)) / self.elapsed_s


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def body(number: int) -> dict[str, Any]:
    return {"message": f"task {number}", "owner": f"owner-{number % OWNERS}"}


def post_all(clients: int) -> Send:
    """POSTs from `clients` concurrent httpx clients."""

    async def send(port: int, tasks: int) -> Answers:
        limits = httpx.Limits(max_connections=clients)
        answers: Answers = []
        numbers = iter(range(tasks))  # shared: each client takes the next number
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:

            async def client() -> None:
                for number in numbers:
                    sent = time.perf_counter()
                    response = await http.post("/tasks", json=body(number))
                    answers.append((response.status_code, (time.perf_counter() - sent) * 1000))

            await asyncio.gather(*(client() for _ in range(clients)))
        return answers

    return send


def post_request(number: int) -> bytes:
    content = json.dumps(body(number)).encode()
    return HEAD + f"content-length: {len(content)}\r\n\r\n".encode() + content


def raw(clients: int, request: Callable[[int], bytes] = post_request) -> Send:
    """`clients` keep-alive connections; on each, a request written as bytes and
    its answer read before the next: the answer time is the server's plus the loopback."""

    async def send(port: int, count: int) -> Answers:
        answers: Answers = []
        numbers = iter(range(count))  # shared: each connection takes the next number

        async def connection() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                for number in numbers:
                    sent = time.perf_counter()
                    writer.write(request(number))
                    status, _ = await read_answer(reader)
                    answers.append((status, (time.perf_counter() - sent) * 1000))
            finally:
                writer.close()

        await asyncio.gather(*(connection() for _ in range(clients)))
        return answers

    return send


async def measure(port: int, pid: int, send: Send, tasks: int) -> Run:
    await wait_ready(f"http://127.0.0.1:{port}")
    await send(port, WARM_UP)
    cpu_before, began = cpu_s(pid), time.perf_counter()
    answers = await send(port, tasks)
    elapsed_s = time.perf_counter() - began
    return Run(elapsed_s, answers, (cpu_s(pid) - cpu_before) * 1000)


async def truncate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE tasks")
    finally:
        await conn.close()


def run_api(found: Stack, env: dict[str, str], send: Send, tasks: int) -> Run:
    """One API process on these settings, an empty table and its own Redis keys."""
    asyncio.run(truncate(found.dsn))
    found = replace(found, namespace=f"{found.namespace}:{uuid.uuid4().hex[:6]}")
    port = free_port()
    api = start_api(found, port, **env)
    try:
        return asyncio.run(measure(port, api.pid, send, tasks))
    finally:
        api.terminate()
        api.wait(60)


def settings_text(env: dict[str, str]) -> str:
    return " ".join(f"{name}={value}" for name, value in env.items()) or "no controls"


def accepted_line(label: str, run: Run) -> str:
    created = run.ms(201)
    if len(created) != len(run.answers):
        raise SystemExit(f"controls {label}: {len(run.answers) - len(created)} POSTs not 201")
    p50, p99 = percentile(created, 0.5), percentile(created, 0.99)
    return (f"controls {label:>3}: {len(created)} tasks in {run.elapsed_s:.2f}s = "
            f"{run.tasks_per_s:,.0f} tasks/s; answer p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
            f"API CPU {run.cpu_ms_per_post:.3f} ms per POST")  # fmt: skip


def compare_controls(found: Stack, modes: list[str], send: Send, tasks: int, rounds: int) -> None:
    """Rounds alternate the order (off on, on off, ...) so that a drift in the
    machine's load weighs on both; the summary takes each mode's median."""
    for mode in modes:
        print(f"settings {mode}: {settings_text(CONTROLS[mode])}")
    runs: dict[str, list[Run]] = {mode: [] for mode in modes}
    for index in range(rounds):
        for mode in modes if index % 2 == 0 else modes[::-1]:
            runs[mode].append(run_api(found, CONTROLS[mode], send, tasks))
            print(accepted_line(mode, runs[mode][-1]))
    cpu = {mode: median(run.cpu_ms_per_post for run in done) for mode, done in runs.items()}
    rate = {mode: median(run.tasks_per_s for run in done) for mode, done in runs.items()}
    for mode in modes:
        print(f"median of {rounds}, controls {mode:>3}: {rate[mode]:,.0f} tasks/s, "
              f"API CPU {cpu[mode]:.3f} ms per POST")  # fmt: skip
    if len(modes) == 2:
        ratio = cpu["on"] / cpu["off"]
        print(f"controls on/off: API CPU per POST x{ratio:.3f} ({(ratio - 1) * 100:+.1f}%), "
              f"tasks/s x{rate['on'] / rate['off']:.3f}")  # fmt: skip


def one_by_one_line(what: str, status: int, run: Run) -> str:
    times = run.ms(status)
    if not times:
        return f"{what}: no {status}; statuses {sorted({code for code, _ in run.answers})}"
    p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
    return (f"{what}: {len(times)} of {len(run.answers)} answered {status}, one at a time; "
            f"answer p50 {p50:.2f} ms, p99 {p99:.2f} ms; "
            f"API CPU {run.cpu_ms_per_post:.3f} ms per request")  # fmt: skip


def measure_refusals(found: Stack, requests: int) -> None:
    """What a refusal costs, beside a request that does nothing at all."""
    floor = run_api(found, {}, raw(1, lambda _: HEALTH), requests)
    print(one_by_one_line("floor, GET /health (HTTP and FastAPI alone)", 200, floor))
    for status, env in REFUSALS.items():
        run = run_api(found, env, raw(1), requests)
        print(one_by_one_line(f"refused POST ({settings_text(env)})", status, run))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--controls", choices=["on", "off", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each mode")
    parser.add_argument("--refusals", type=int, default=2000, help="POSTs refused; 0: skip")
    args = parser.parse_args()
    modes = ["off", "on"] if args.controls == "both" else [args.controls]
    send = raw(args.clients) if args.client == "raw" else post_all(args.clients)
    print(f"{args.tasks} POSTs a run from {args.clients} {args.client} clients")
    with stack() as found:
        compare_controls(found, modes, send, args.tasks, args.rounds)
        if args.refusals:
            measure_refusals(found, args.refusals)


if __name__ == "__main__":
    main()
