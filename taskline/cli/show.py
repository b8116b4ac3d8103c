"""How tasks and queues look in a terminal."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.table import Table

from tasks.schemas import QueueOut, TaskOut, WorkerOut

ROW = (
    "{id:<36}  {status:<10}  {kind:<12}  {queue:<10}  {priority:>3}  {tries:>5}  {created:<19}"
    "  {message}"
)
HEADER = ROW.format(
    id="ID", status="STATUS", kind="KIND", queue="QUEUE", priority="PRI", tries="TRIES",
    created="CREATED (UTC)", message="MESSAGE",
)  # fmt: skip
MESSAGE_WIDTH = 40


def when(value: datetime | None, zone: str = "") -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S") + zone


def short(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def status_of(task: TaskOut) -> str:
    if task.cancel_requested and task.status == "processing":
        return "processing (cancel requested)"
    return str(task.status)


def row(task: TaskOut) -> str:
    return ROW.format(
        id=str(task.id),
        status=str(task.status),
        kind=short(task.kind, 12),
        queue=short(task.queue, 10),
        priority=task.priority,
        tries=f"{task.attempts}/{task.max_attempts}",
        created=when(task.created_at),
        message=short(task.message, MESSAGE_WIDTH),
    )


def detail(task: TaskOut) -> str:
    fields: list[tuple[str, str]] = [
        ("id", str(task.id)),
        ("status", status_of(task)),
        ("kind", task.kind),
        ("queue", f"{task.queue} (priority {task.priority})"),
        ("message", short(task.message, 200)),
        ("payload", short(compact(task.payload), 200)),
        ("result", "-" if task.result is None else short(compact(task.result), 200)),
        ("error", task.error or "-"),
        ("attempts", f"{task.attempts} of {task.max_attempts}" + _redrives(task)),
        ("owner", task.owner or "-"),
        ("worker", task.worker_id or "-"),
        ("created", when(task.created_at, "Z")),
        ("run at", when(task.run_at, "Z")),
        ("started", when(task.started_at, "Z")),
        ("finished", when(task.finished_at, "Z")),
    ]
    if task.expires_at is not None:
        fields.append(("expires", when(task.expires_at, "Z")))
    lines = [f"{name:<9} {value}" for name, value in fields]
    for entry in task.errors:
        round_ = f" of re-drive {entry['redrive']}" if entry.get("redrive") else ""
        lines.append(f"{'':<9} attempt {entry.get('attempt', '?')}{round_}: {entry.get('error')}")
    return "\n".join(lines)


def _redrives(task: TaskOut) -> str:
    if task.redrives == 0:
        return ""
    return f" (sent round again {task.redrives} time{'s' if task.redrives > 1 else ''})"


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def queues_table(queues: list[QueueOut], trends: dict[str, str] | None = None) -> Table:
    """One row per queue; with `trends`, a column saying how fast pending changes."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for title in ("QUEUE", "PENDING", "READY", "SCHEDULED", "PROCESSING", "OLDEST READY"):
        table.add_column(title, justify="left" if title == "QUEUE" else "right")
    if trends is not None:
        table.add_column("PENDING/S", justify="right")
    for queue in queues:
        cells = [
            queue.name,
            str(queue.pending),
            str(queue.ready),
            str(queue.scheduled),
            str(queue.processing),
            age(queue.oldest_ready_age_s),
        ]
        if trends is not None:
            cells.append(trends.get(queue.name, ""))
        table.add_row(*cells)
    return table


def workers_table(workers: list[WorkerOut]) -> Table:
    """One row per live worker: its queues, slots busy of total, and heartbeat age."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for title in ("WORKER", "QUEUES", "BUSY/SLOTS", "HEARTBEAT"):
        table.add_column(title, justify="right" if title == "BUSY/SLOTS" else "left")
    for worker in workers:
        table.add_row(
            worker.id,
            ",".join(worker.queues),
            f"{worker.slots_busy}/{worker.slots_total}",
            age(worker.heartbeat_age_s) + " ago",
        )
    return table
