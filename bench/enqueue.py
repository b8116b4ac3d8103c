"""How many tasks per second does one API process accept?

Runs `taskline api` as a process and POSTs `echo` tasks from N concurrent
clients; reports accepted tasks per second, the answer latency and the API
process's CPU time per POST.

    .venv/bin/python bench/enqueue.py [--tasks 5000] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import httpx
from common import free_port, percentile, stack, start_api
from latency import wait_ready


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def post_all(base_url: str, tasks: int, clients: int) -> tuple[float, list[float]]:
    limits = httpx.Limits(max_connections=clients)
    answers_ms: list[float] = []
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for number in range(tasks):
            queue.put_nowait(number)

        async def client() -> None:
            while not queue.empty():
                number = queue.get_nowait()
                sent = time.perf_counter()
                response = await http.post("/tasks", json={"message": f"task {number}"})
                response.raise_for_status()
                answers_ms.append((time.perf_counter() - sent) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - began, answers_ms


async def measure(base_url: str, pid: int, tasks: int, clients: int) -> None:
    await wait_ready(base_url)
    await post_all(base_url, 200, clients)  # warm up
    cpu_before = cpu_s(pid)
    elapsed_s, answers_ms = await post_all(base_url, tasks, clients)
    cpu_ms = (cpu_s(pid) - cpu_before) / tasks * 1000
    p50, p99 = percentile(answers_ms, 0.5), percentile(answers_ms, 0.99)
    print(f"enqueue: {tasks} tasks from {clients} clients in {elapsed_s:.2f}s "
          f"= {tasks / elapsed_s:,.0f} tasks/s; answer p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
          f"API CPU {cpu_ms:.2f} ms per POST")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    with stack() as found:
        port = free_port()
        api = start_api(found, port)
        try:
            asyncio.run(measure(f"http://127.0.0.1:{port}", api.pid, args.tasks, args.clients))
        finally:
            api.terminate()
            api.wait(60)


if __name__ == "__main__":
    main()
