"""The tick loop: every worker runs it beside its own loops (worker.py adds it).

Each round is one cheap indexed query when nothing is due. A due schedule is
claimed FOR UPDATE SKIP LOCKED, its ticks' tasks are inserted and its
`next_run_at` moved on in one transaction; each task's idempotency key is the
schedule id and the tick, unique in the table, so however many workers tick,
restart or die mid-round, a tick gets one task.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.errors import is_store_error
from app.ids import uuid7
from app.lifespan import Resources
from app.loops import stop_if_canceled
from schedules import repository
from schedules.cron import Plan, Rule, cron_problem, next_after, plan, zone_problem
from schedules.models import CATCH_UP_MODES
from tasks import events
from tasks import repository as task_repository
from tasks.doorbell import Doorbell
from tasks.handlers import Registry
from tasks.handlers import Schedule as Declared
from tasks.service import DEFAULT_PRIORITY, DEFAULT_QUEUE, kind_rule
from tasks.submissions import NewTask

log = logging.getLogger("taskline.schedules")

ROUND_LIMIT = 100
BROKEN_RETRY = timedelta(hours=1)


def tick_key(schedule_id: str, tick: datetime) -> str:
    """The idempotency key of a tick's task. The space keeps it apart from any
    Idempotency-Key header, which allows visible characters only."""
    return f"schedule {schedule_id} {tick.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"


def rule_of(row: Any) -> Rule:
    return Rule(row["cron"], row["every_seconds"], row["timezone"])


@dataclass
class _Round:
    tasks: list[NewTask]
    ids: list[str]
    next_run_at: list[datetime]
    last_run_at: list[datetime | None]
    last_task: list[uuid.UUID | None]


def _plan_row(row: Any, resources: Resources) -> Plan:
    settings = resources.settings
    try:
        return plan(
            rule_of(row),
            due_since=row["next_run_at"],
            now=row["db_now"],
            catch_up=row["catch_up"],
            grace_s=settings.schedule_misfire_grace_s,
            cap=settings.schedule_catch_up_max,
        )
    except ValueError as error:  # a rule that never fires; checked when stored, so rare
        log.error("schedule %s cannot be planned (%s); next try in an hour", row["id"], error)
        return Plan([], False, row["db_now"] + BROKEN_RETRY)


def _new_task(row: Any, tick: datetime, resources: Resources) -> NewTask:
    settings = resources.settings
    rule = kind_rule(settings, row["kind"])
    priority = row["priority"]
    return NewTask(
        id=uuid7(),
        kind=row["kind"],
        message=row["message"],
        payload=row["payload"],
        max_attempts=settings.default_max_attempts,
        timeout_seconds=settings.default_timeout_s,
        idempotency_key=tick_key(row["id"], tick),
        queue=row["queue"] or rule.queue or DEFAULT_QUEUE,
        priority=priority if priority is not None else _or(rule.priority, DEFAULT_PRIORITY),
    )


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _round(due: list[Any], resources: Resources) -> _Round:
    work = _Round([], [], [], [], [])
    for row in due:
        found = _plan_row(row, resources)
        tasks = [_new_task(row, tick, resources) for tick in found.ticks]
        if found.skipped:
            log.warning("schedule %s: skipped ticks missed before %s (catch_up=%s)",
                        row["id"], found.ticks[0] if found.ticks else found.next_run_at,
                        row["catch_up"])  # fmt: skip
        work.tasks += tasks
        work.ids.append(row["id"])
        work.next_run_at.append(found.next_run_at)
        work.last_run_at.append(found.ticks[-1] if found.ticks else None)
        work.last_task.append(tasks[-1].id if tasks else None)
    return work


async def tick_once(resources: Resources) -> int:
    """One round: create the tasks of the due ticks of up to ROUND_LIMIT schedules.
    Returns how many schedules were due."""
    async with task_repository.driver_connection(resources.engine) as conn, conn.transaction():
        due = await repository.claim_due(conn=conn, limit=ROUND_LIMIT)
        if not due:
            return 0
        work = _round(due, resources)
        rows = await task_repository.insert_tasks(conn=conn, tasks=work.tasks)
        created = {row["id"] for row in rows}
        await repository.advance(
            conn=conn,
            ids=work.ids,
            next_run_at=work.next_run_at,
            last_run_at=work.last_run_at,
            last_task_id=[i if i in created else None for i in work.last_task],
        )
    announce = events.stage(resources, events.of_created(rows))
    try:
        await Doorbell(resources).send(
            ready=[task_repository.bell_of_row(row) for row in rows], also=[announce]
        )
    except Exception as error:  # committed: the reconcile rings them after its grace
        log.warning("%d scheduled task(s) created but not rung: %s", len(rows), error)
    return len(due)


def declaration_problem(schedule: Declared) -> str | None:
    if (schedule.cron is None) == (schedule.every_seconds is None):
        return "give cron or every_seconds, exactly one of them"
    if schedule.every_seconds is not None and schedule.every_seconds < 1:
        return "every_seconds must be at least 1"
    if schedule.catch_up not in CATCH_UP_MODES:
        return f"catch_up must be one of {', '.join(CATCH_UP_MODES)}"
    return (schedule.cron and cron_problem(schedule.cron)) or zone_problem(schedule.timezone)


async def declare_all(resources: Resources, registry: Registry, now: datetime) -> None:
    """Store the schedules declared in code (each worker does at start; idempotent)."""
    declared = registry.schedules()
    if not declared:
        return
    async with task_repository.driver_connection(resources.engine) as conn:
        for schedule in declared:
            problem = declaration_problem(schedule)
            if problem is not None:
                log.error("schedule %s declared in code is not valid: %s", schedule.id, problem)
                continue
            rule = Rule(schedule.cron, schedule.every_seconds, schedule.timezone)
            stored = await repository.declare(
                conn=conn,
                schedule=schedule,
                message=schedule.message or f"schedule {schedule.id}",
                next_run_at=next_after(rule, now),
            )
            if not stored:
                log.warning("schedule %s declared in code: an API schedule has that id; "
                            "the API one stays", schedule.id)  # fmt: skip


async def tick_loop(resources: Resources, registry: Registry) -> None:
    """Supervised by the worker: store errors are waited out, anything else stops it."""
    interval_s = resources.settings.schedule_interval_s
    declared = False
    while True:
        stop_if_canceled()
        try:
            if not declared:
                await declare_all(resources, registry, await _db_now(resources))
                declared = True
            while await tick_once(resources) >= ROUND_LIMIT:
                pass
        except Exception as error:
            if not is_store_error(error):
                raise
            log.warning("schedule tick failed (%s); trying again next round", error)
        await asyncio.sleep(interval_s)


async def _db_now(resources: Resources) -> datetime:
    async with task_repository.driver_connection(resources.engine) as conn:
        now: datetime = await conn.fetchval("SELECT now()")
    return now
