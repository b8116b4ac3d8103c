"""Requests per second through the gateway to a fast upstream, against the same
requests sent to the upstream directly.

The upstream is a bare ASGI app on uvicorn (httptools) answering 200 with a
small JSON body at once, in a process of its own. Then `taskline gateway` (one
process) and `python worker.py` (one worker, WORKER_QUEUE_MAXSIZE slots) on
embedded PostgreSQL and Valkey: every request through the gateway is an `http`
task, committed, rung, claimed, sent, recorded and announced. C concurrent
clients (httpx, keep-alive, one process) send N GETs, first to the upstream,
then through the gateway. Reports requests/s, latency percentiles, and the CPU
time per request of the gateway and the worker. Everything shares the same
cores, the client included.

    .venv/bin/python bench/gateway.py [--requests 3000] [--clients 32] [--slots 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import httpx
from common import ROOT, free_port, percentile, stack, start_worker

BODY = b'{"ok":true}'


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def serve_upstream(port: int) -> None:
    import uvicorn

    uvicorn.run(upstream_app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


async def load(url: str, total: int, clients: int) -> tuple[float, list[float]]:
    """`total` GETs from `clients` concurrent loops; (seconds, latencies in ms)."""
    latencies: list[float] = []
    remaining = iter(range(total))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:

        async def client() -> None:
            for n in remaining:
                sent = time.perf_counter()
                response = await http.get(f"/items/{n}", params={"q": "bench"})
                if response.status_code != 200 or response.content != BODY:
                    raise SystemExit(f"unexpected answer: {response.status_code} {response.text}")
                latencies.append((time.perf_counter() - sent) * 1000)

        await http.get("/warm-up")
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - started, latencies


def report(name: str, total: int, elapsed_s: float, latencies: list[float]) -> str:
    return (
        f"{name}: {total} requests in {elapsed_s:.2f}s = {total / elapsed_s:,.0f} requests/s;"
        f" p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--slots", type=int, default=10, help="WORKER_QUEUE_MAXSIZE")
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return
    upstream_port, gateway_port = free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    upstream = subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(upstream_port)])
    try:
        wait_ready(upstream_url)
        elapsed_s, latencies = asyncio.run(load(upstream_url, args.requests, args.clients))
        direct = report("direct", args.requests, elapsed_s, latencies)
        with stack() as found:
            env = {"GATEWAY_TARGET_BASE_URL": upstream_url, "WORKER_QUEUE_MAXSIZE": str(args.slots)}
            gateway = subprocess.Popen(
                [sys.executable, "-m", "taskline", "gateway"],
                cwd=ROOT, env=found.env(GATEWAY_PORT=str(gateway_port), **env),
            )  # fmt: skip
            worker = start_worker(found, **env)
            try:
                gateway_url = f"http://127.0.0.1:{gateway_port}"
                wait_ready(f"{gateway_url}/_gateway/ready")
                before = cpu_s(gateway.pid), cpu_s(worker.pid)
                elapsed_s, latencies = asyncio.run(load(gateway_url, args.requests, args.clients))
                gateway_cpu_s, worker_cpu_s = (
                    cpu_s(gateway.pid) - before[0],
                    cpu_s(worker.pid) - before[1],
                )
            finally:
                for process in (gateway, worker):
                    process.terminate()
                    process.wait(60)
        through = report("through the gateway", args.requests, elapsed_s, latencies)
    finally:
        upstream.terminate()
        upstream.wait(30)
    print(f"gateway bench: {args.clients} concurrent clients, 1 gateway process, 1 worker"
          f" with {args.slots} slots")  # fmt: skip
    print(direct)
    print(through)
    per_request_ms = [cpu * 1000 / args.requests for cpu in (gateway_cpu_s, worker_cpu_s)]
    print(f"CPU per request through the gateway: gateway {per_request_ms[0]:.2f} ms,"
          f" worker {per_request_ms[1]:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
