"""The comparison's report: each measure's median and range over the rounds, as a
Markdown table (printed, and written to bench/results/peers-DATE.md) and a chart
(peers-DATE.png, drawn by chart.py in the peers' virtualenv)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

HERE = Path(__file__).resolve().parent

# (workload, measure, column title, higher is better)
COLUMNS = (
    ("enqueue", "jobs_per_s", "enqueue, jobs/s", True),
    ("drain", "jobs_per_s", "drain, jobs/s", True),
    ("drain", "worker_cpu_ms", "drain, worker CPU ms/job", False),
    ("latency", "p50_ms", "latency p50, ms", False),
    ("latency", "p99_ms", "latency p99, ms", False),
    ("bulk", "jobs_per_s", "bulk enqueue, jobs/s", True),
)
HOW = """How each system ran (one worker process, 10 at a time, no-op jobs):

- Taskline: `python worker.py` (WORKER_QUEUE_MAXSIZE=10), the `noop` kind of
  `bench/peers/taskline_handlers.py`; enqueue and latency through one `taskline api`
  process over HTTP. "Taskline" in the enqueue column: POST /tasks on one keep-alive
  connection, written as bytes (the API's cost plus the loopback); "(Python client)":
  `taskline.client.Client.create_task` (httpx). Latency likewise: POST /tasks
  written as bytes on keep-alive connections; "(httpx client)": the same POSTs
  through httpx.AsyncClient, which costs the caller about 1 ms of CPU each. Every
  state change committed in PostgreSQL (fsync on, synchronous_commit on); claims
  (from 3 December 2026 12:00 UTC) with synchronous_commit off for their own
  transaction (CLAIM_SYNCHRONOUS_COMMIT=off, the default: a claim that a crash
  forgets runs its task again), so inserts and outcomes wait for the WAL flush
  and claims do not.
- Dramatiq: RedisBroker, `dramatiq --processes 1 --threads 10`, `actor.send()`.
- SAQ: Redis queue, `saq --workers 1` with concurrency 10, `await queue.enqueue()`.
- Celery: Redis broker, no result backend (`task_ignore_result`),
  `celery worker --pool threads --concurrency 10` (one process), `task.delay()`.
- PgQueuer: its own database (`pgq install`, durable tables), its worker as
  `pgq run --max-concurrent-tasks 10 --batch-size 5` runs it (`pgqueuer.run`),
  `await queries.enqueue()`; its bulk enqueue: `queries.enqueue()` with lists of
  1,000 jobs (one INSERT; it answers their ids), beside Taskline's `POST
  /tasks/batch` of 1,000 tasks, one request at a time, ids back (`Prefer:
  return=minimal`, from 3 December 2026 21:00 UTC): "Taskline" with the JSON
  encoded as httpx encodes it, inside the timing, and written as bytes on one
  keep-alive connection (from 4 December 2026 14:40 UTC); "(httpx client)"
  through httpx.AsyncClient, which costs the caller about 4 ms of CPU a batch.
  The two take turns, a batch each, each batch timed (from 15:30 UTC; before,
  the caller as bytes ran first, and was the slower in 4 of 6 rounds).
- Drain: jobs enqueued before the worker starts (Taskline: one COPY; PgQueuer: its
  batch enqueue), timed inside the worker from the first job's start to the last
  one's (the worker's start-up excluded); CPU is the worker process's (psutil) over
  the same span. Latency: enqueue call → handler start, at a steady rate after a
  second of warm-up. The Redis-based systems are as durable as Valkey's append-only
  file (fsync every second)."""


def machine(args: argparse.Namespace, load: tuple[float, float, float]) -> dict[str, Any]:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo
                         if line.startswith("model name"))  # fmt: skip
    except (OSError, StopIteration):
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
        "load_before": load, "settings": vars(args) | {"out": str(args.out)},
    }  # fmt: skip


def line(result: dict[str, Any]) -> str:
    """One result as a line of progress."""
    values = {key: value for key, value in result.items() if key not in ("system", "workload")}
    shown = ", ".join(f"{key} {fmt(value)}" for key, value in values.items())
    return f"{result['system']} {result['workload']}: {shown}"


def fmt(value: Any) -> str:
    if not isinstance(value, float):
        return str(value)
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3f}" if value < 1 else f"{value:.3g}"


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per system, per `workload.measure`: the values of the rounds."""
    table: dict[str, dict[str, list[float]]] = {}
    for result in results:
        if "failed" in result or "skipped" in result:
            continue
        row = table.setdefault(result["system"], {})
        for key, value in result.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                row.setdefault(f"{result['workload']}.{key}", []).append(float(value))
    return table


def cell(values: list[float] | None) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(median(values))} ({fmt(min(values))}-{fmt(max(values))})"


def ratio_row(table: dict[str, dict[str, list[float]]]) -> list[str]:
    """Taskline's median over the best peer's, per column."""
    cells = []
    for workload, measure, _, higher in COLUMNS:
        key = f"{workload}.{measure}"
        peers = {name: median(row[key]) for name, row in table.items()
                 if not name.startswith("Taskline") and row.get(key)}  # fmt: skip
        ours = table.get("Taskline", {}).get(key)
        if not peers or not ours:
            cells.append("-")
            continue
        best = (max if higher else min)(peers, key=lambda name: peers[name])
        cells.append(f"x{median(ours) / peers[best]:.2f} of {best}")
    return cells


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    table = summarize(results)
    versions = {result["system"].split(" (")[0]: result["version"]
                for result in results if "version" in result}  # fmt: skip
    rounds = meta["settings"]["rounds"]
    out = [f"# Taskline and its peers, {meta['date']}", ""]
    out += [
        f"- Machine: {meta['cpu']}, {meta['cores']} cores; load average (1.0: one core"
        " busy; above the benchmark's own, other work shared the machine) "
        f"{'/'.join(f'{x:.1f}' for x in meta['load_before'])} at the start, "
        f"{'/'.join(f'{x:.1f}' for x in meta['load_after'])} at the end ({meta['started']}).",
        f"- PostgreSQL {meta['postgres']} and Valkey {meta['valkey']}, embedded, one of each for"
        " every system (each its own database or Redis db); Python " + meta["python"] + ".",
        "- Versions: " + ", ".join(f"{name} {version}" for name, version in versions.items()),
        _settings_line(meta["settings"]),
        f"- Each cell: the median of {rounds} rounds (their range in brackets)."
        if rounds > 1
        else "- Each cell: one round.",
        "",
        "| system | " + " | ".join(title for _, _, title, _ in COLUMNS) + " |",
        "| --- |" + " ---: |" * len(COLUMNS),
    ]
    for name, row in table.items():
        cells = [cell(row.get(f"{workload}.{measure}")) for workload, measure, _, _ in COLUMNS]
        if any(found != "-" for found in cells):  # wrk alone has its own line below
            out.append(f"| {name} | " + " | ".join(cells) + " |")
    out.append("| **Taskline / best peer** | " + " | ".join(ratio_row(table)) + " |")
    out += ["", "Above x1 in the jobs/s columns, Taskline is faster than the best peer; in the"
            " CPU and latency columns, below x1 is better for Taskline.", ""]  # fmt: skip
    out += _wrk_lines(table, meta) + _caller_lines(table) + _trouble_lines(results) + [HOW, ""]
    return "\n".join(out)


def _settings_line(settings: dict[str, Any]) -> str:
    return (f"- Workloads: enqueue {settings['enqueue_tasks']:,} jobs, one client, one at a"
            f" time; drain {settings['tasks']:,} no-op jobs; latency at {settings['rate']:g}"
            f" jobs/s for {settings['seconds']:g} s;"
            f" wrk -t1 -c32 -d{settings['wrk_seconds']:g}s.")  # fmt: skip


def _wrk_lines(table: dict[str, dict[str, list[float]]], meta: dict[str, Any]) -> list[str]:
    row = table.get("Taskline", {})
    if meta.get("wrk_skipped") or "wrk.req_per_s" not in row:
        return [f"wrk: not run ({meta.get('wrk_skipped') or 'no result'}).", ""]
    return [
        f"Taskline, one API process under `wrk -t1 -c32 -d{meta['settings']['wrk_seconds']:g}s`"
        ' POSTing `{"message": "Hello World"}`: '
        f"{cell(row['wrk.req_per_s'])} requests/s, answer p50 {cell(row.get('wrk.p50_ms'))} ms,"
        f" p99 {cell(row.get('wrk.p99_ms'))} ms; non-2xx answers:"
        f" {int(sum(row.get('wrk.non_2xx', [0])))}.",
        "",
    ]


SATURATED_PCT = 80.0  # of one core: a one-threaded caller this busy falls behind


def _caller_lines(table: dict[str, dict[str, list[float]]]) -> list[str]:
    """The latency callers' CPU while sending, and which were too busy to send on time."""
    found = {name: row["latency.caller_cpu_pct"] for name, row in table.items()
             if "latency.caller_cpu_pct" in row}  # fmt: skip
    if not found:
        return []
    shares = "; ".join(f"{name} {cell(values)} %" for name, values in found.items())
    busy = [name for name, values in found.items() if max(values) >= SATURATED_PCT]
    warning = (
        f" At {SATURATED_PCT:.0f}% or more the caller could not send at the rate, so those"
        f" latencies are mostly its own queue: {', '.join(busy)}."
        if busy
        else ""
    )
    return [f"Latency callers' CPU while sending (share of one core): {shares}.{warning}", ""]


def _trouble_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = [f"- {r['system']} {r['workload']}: {r.get('failed') or r.get('skipped')}"
             for r in results if "failed" in r or "skipped" in r]  # fmt: skip
    return ["Not measured:", "", *sorted(set(lines)), ""] if lines else []


def write(results: list[dict[str, Any]], meta: dict[str, Any], out: Path, python: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(results, meta)
    print(text)
    stem = out / f"peers-{meta['date']}"
    stem.with_suffix(".md").write_text(text)
    summary = {"title": f"Taskline and its peers, {meta['date']} ({meta['cores']} cores)",
               "columns": [[w, m, t, h] for w, m, t, h in COLUMNS],
               "table": summarize(results)}  # fmt: skip
    data = stem.with_suffix(".json")
    data.write_text(json.dumps({"meta": meta, "results": results, "summary": summary}, indent=1))
    subprocess.run([str(python), str(HERE / "chart.py"), str(data), str(stem.with_suffix(".png"))],
                   check=True)  # fmt: skip
    print(f"wrote {stem}.md, {stem}.json and {stem}.png")
