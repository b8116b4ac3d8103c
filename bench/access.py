"""What does access control cost an API process?

Runs `taskline api` as a process with AUTH=none and with AUTH=keys (a key of
one tenant with tasks:write and tasks:read, made by `taskline keys create`),
alternately for `--rounds` rounds: N concurrent raw keep-alive clients POST
`echo` tasks, then one client lists (`GET /tasks?limit=1`) one request at a
time. Reports tasks/s, answer times and the API process's CPU time per request.
Then a refused request (a wrong secret of a known key id: 401), one at a time.

    .venv/bin/python bench/access.py [--tasks 5000] [--clients 50] [--rounds 3] [--reads 2000]
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
from collections.abc import Callable
from statistics import median

from common import ROOT, Stack, percentile, stack
from enqueue import Run, raw, run_api

GET_LIST = b"GET /tasks?limit=1 HTTP/1.1\r\nhost: bench\r\n"


def make_key(found: Stack, pepper: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "create", "--owner", "bench",
         "--scopes", "tasks:write,tasks:read"],
        cwd=ROOT, env=found.env(AUTH="keys", AUTH_PEPPER=pepper), capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


POST_HEAD = b"POST /tasks HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"


def post(header: bytes) -> Callable[[int], bytes]:
    def request(number: int) -> bytes:
        content = json.dumps({"message": f"task {number}"}).encode()
        length = f"content-length: {len(content)}\r\n\r\n".encode()
        return POST_HEAD + header + length + content

    return request


def listing(header: bytes) -> Callable[[int], bytes]:
    return lambda _: GET_LIST + header + b"\r\n"


def line(label: str, status: int, run: Run) -> str:
    times = [ms for code, ms in run.answers if code == status]
    if len(times) != len(run.answers):
        codes = sorted({code for code, _ in run.answers})
        raise SystemExit(f"{label}: expected {status} only, got {codes}")
    p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
    return (
        f"{label}: {len(times)} x {status} in {run.elapsed_s:.2f}s = "
        f"{len(times) / run.elapsed_s:,.0f}/s; answer p50 {p50:.2f} ms, p99 {p99:.2f} ms;"
        f" API CPU {run.cpu_ms_per_post:.3f} ms each"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args()
    pepper = secrets.token_hex(32)
    with stack() as found:
        token = make_key(found, pepper)
        key_id = token.split("_")[1]
        modes = {
            "none": ({}, b""),
            "keys": ({"AUTH": "keys", "AUTH_PEPPER": pepper},
                     f"authorization: Bearer {token}\r\n".encode()),
        }  # fmt: skip
        posts: dict[str, list[Run]] = {mode: [] for mode in modes}
        reads: dict[str, list[Run]] = {mode: [] for mode in modes}
        for index in range(args.rounds):
            for mode in list(modes) if index % 2 == 0 else list(modes)[::-1]:
                env, header = modes[mode]
                posts[mode].append(run_api(found, env, raw(args.clients, post(header)), args.tasks))
                print(line(f"AUTH={mode:<4} POST /tasks, {args.clients} clients", 201,
                           posts[mode][-1]))  # fmt: skip
                reads[mode].append(run_api(found, env, raw(1, listing(header)), args.reads))
                print(line(f"AUTH={mode:<4} GET /tasks?limit=1, one at a time", 200,
                           reads[mode][-1]))  # fmt: skip
        for what, runs in (("POST", posts), ("GET", reads)):
            cpu = {mode: median(run.cpu_ms_per_post for run in done) for mode, done in runs.items()}
            print(f"median of {args.rounds}, {what}: API CPU per request none {cpu['none']:.3f} ms,"
                  f" keys {cpu['keys']:.3f} ms (x{cpu['keys'] / cpu['none']:.3f})")  # fmt: skip
        wrong = f"authorization: Bearer tl_{key_id}_{'x' * 43}\r\n".encode()
        refused = run_api(found, modes["keys"][0], raw(1, listing(wrong)), args.reads)
        print(line("AUTH=keys, a wrong secret, one at a time", 401, refused))


if __name__ == "__main__":
    main()
