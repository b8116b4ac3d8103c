"""How fast do HTTP consumers drain a queue through one API process?

Puts N messages on a queue (through the API, 500 per request), then starts C
consumer processes that lease up to 10 messages at a time and ack each one
(one request per ack, as the README's plain consumer does). Measures from the
first lease to the last ack as PostgreSQL saw them (`started_at` of the first
claimed message, `finished_at` of the last acked one; every change committed),
and the API process's CPU time per message (its lease share and its ack). The
consumers are httpx clients in processes of their own, on the same machine.

    .venv/bin/python bench/consumers.py [--messages 20000] [--consumers 4] [--lease 10]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import time

import asyncpg
import httpx
from common import Stack, free_port, percentile, stack, start_api

QUEUE = "bench"


def wait_ready(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the API did not become ready")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fill(url: str, count: int) -> None:
    with httpx.Client(base_url=url, timeout=60) as http:
        http.post("/queues", json={"id": QUEUE}).raise_for_status()
        for start in range(0, count, 500):
            batch = [{"data": {"n": n}} for n in range(start, min(count, start + 500))]
            http.post(f"/queues/{QUEUE}/messages", json={"messages": batch}).raise_for_status()


def consume(url: str, name: str, lease_size: int, results: multiprocessing.Queue) -> None:
    """Lease and ack until a lease that waited a second comes back empty."""
    acked, lease_ms = 0, []
    with httpx.Client(base_url=url, timeout=60) as http:
        while True:
            sent = time.perf_counter()
            body = {"max_messages": lease_size, "wait_seconds": 1, "consumer": name}
            response = http.post(f"/queues/{QUEUE}/lease", json=body)
            response.raise_for_status()
            messages = response.json()["messages"]
            if not messages:
                break
            lease_ms.append((time.perf_counter() - sent) * 1000)
            for message in messages:
                handle = {"receipt_handle": message["receipt_handle"]}
                http.post(f"/messages/{message['id']}/ack", json=handle).raise_for_status()
                acked += 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results.put((acked, lease_ms, usage.ru_utime + usage.ru_stime))


async def span(found: Stack) -> tuple[float, int]:
    conn = await asyncpg.connect(found.dsn)
    try:
        row = await conn.fetchrow(
            "SELECT extract(epoch FROM max(finished_at) - min(started_at)) AS span_s,"
            " count(*) FILTER (WHERE status = 'completed') AS acked FROM tasks"
            " WHERE queue = $1",
            QUEUE,
        )
        return float(row["span_s"] or 0), int(row["acked"])
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--lease", type=int, default=10, help="max_messages per lease")
    args = parser.parse_args()
    with stack() as found:
        port = free_port()
        api = start_api(found, port)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url)
            fill(url, args.messages)
            results: multiprocessing.Queue = multiprocessing.Queue()
            consumers = [
                multiprocessing.Process(target=consume, args=(url, f"c{n}", args.lease, results))
                for n in range(args.consumers)
            ]
            cpu_before = cpu_s(api.pid)
            for process in consumers:
                process.start()
            outcomes = [results.get(timeout=600) for _ in consumers]
            api_cpu_s = cpu_s(api.pid) - cpu_before
            for process in consumers:
                process.join(60)
            span_s, acked = asyncio.run(span(found))
        finally:
            api.terminate()
            api.wait(60)
    leases = [ms for _, lease_ms, _ in outcomes for ms in lease_ms]
    client_cpu_s = sum(cpu for _, _, cpu in outcomes)
    rate = acked / span_s if span_s else 0.0
    print(f"consumers: {acked}/{args.messages} messages leased and acked in {span_s:.2f}s "
          f"= {rate:,.0f} messages/s ({args.consumers} HTTP consumers, {args.lease} per lease, "
          f"1 API process); per consumer {[n for n, _, _ in outcomes]}; "
          f"lease p50 {percentile(leases, 0.5):.1f} ms, p99 {percentile(leases, 0.99):.1f} ms; "
          f"CPU per message: API {api_cpu_s * 1000 / max(acked, 1):.2f} ms, "
          f"consumers {client_cpu_s * 1000 / max(acked, 1):.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
