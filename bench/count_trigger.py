"""What do the dead-letter count triggers (migration 0012) cost the workers'
statements?

N pending tasks are claimed 100 at a time (pending -> processing) and finished
100 at a time (processing -> completed), as the worker's statements do, with
and without migration 0012's triggers, in alternating rounds on the same
database; prints the statement time per task and the time spent in triggers
as EXPLAIN ANALYZE reports it (commits do not wait for the disk, so that fsync
does not drown the rest). `--kind message` runs the same on messages, and
`--fail` fails them instead (each failed message a dead letter).

    .venv/bin/python bench/count_trigger.py [--tasks 30000] [--rounds 3] [--kind echo] [--fail]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import re
import time
from pathlib import Path
from types import ModuleType

import asyncpg
from common import ROOT, Stack, stack

BATCH = 100
CLAIM = """
    UPDATE tasks SET status = 'processing', attempts = attempts + 1, started_at = now()
     WHERE id = ANY($1::uuid[]) AND status = 'pending'
"""
FINISH = """
    UPDATE tasks SET status = $2, finished_at = now()
     WHERE id = ANY($1::uuid[]) AND status = 'processing'
"""
TRIGGER_TIME = re.compile(r"Trigger [a-z_]+: time=([0-9.]+)")


def migration() -> ModuleType:
    [path] = (Path(ROOT) / "alembic" / "versions").glob("*-0012_*.py")
    spec = importlib.util.spec_from_file_location("migration_0012", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def timed(conn: asyncpg.Connection, statement: str, *args: object) -> float:
    """Runs the statement; the milliseconds its triggers took."""
    plan = await conn.fetch("EXPLAIN (ANALYZE) " + statement, *args)
    return sum(float(t) for t in TRIGGER_TIME.findall("\n".join(row[0] for row in plan)))


async def one_round(
    conn: asyncpg.Connection, tasks: int, kind: str, outcome: str
) -> tuple[float, float]:
    """Per task, claim and finish together: seconds of statement time, and of
    that, seconds in triggers."""
    await conn.execute("TRUNCATE tasks, task_counts, task_count_changes")
    await conn.execute(
        "INSERT INTO tasks (id, kind, message) SELECT gen_random_uuid(), $2, 'bench'"
        " FROM generate_series(1, $1)",
        tasks,
        kind,
    )
    await conn.execute("VACUUM ANALYZE tasks")
    ids = [row[0] for row in await conn.fetch("SELECT id FROM tasks ORDER BY id")]
    spent_s = trigger_ms = 0.0
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        began = time.perf_counter()
        trigger_ms += await timed(conn, CLAIM, batch)
        trigger_ms += await timed(conn, FINISH, batch, outcome)
        spent_s += time.perf_counter() - began
    return spent_s / len(ids), trigger_ms / 1000 / len(ids)


async def main(found: Stack, tasks: int, rounds: int, kind: str, outcome: str) -> None:
    module = migration()
    setups = {"without": module.DROP, "with": module.CREATE}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
    conn = await asyncpg.connect(found.dsn)
    await conn.execute("SET synchronous_commit = off")
    try:
        for _ in range(rounds):
            for name, statements in setups.items():
                for statement in statements:
                    await conn.execute(statement)
                results[name].append(await one_round(conn, tasks, kind, outcome))
    finally:
        await conn.close()
    print(f"{tasks:,} tasks of kind {kind}, claimed and {outcome} {BATCH} at a time")
    for name, per_task in results.items():
        total = " / ".join(f"{spent_s * 1e6:.0f}" for spent_s, _ in per_task)
        triggers = " / ".join(f"{trigger_s * 1e6:.1f}" for _, trigger_s in per_task)
        print(f"  {name} the dead-letter triggers: statements {total} µs per task,")
        print(f"    of which triggers {triggers} µs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kind", default="echo")
    parser.add_argument("--fail", action="store_true")
    args = parser.parse_args()
    with stack() as found:
        outcome = "failed" if args.fail else "completed"
        asyncio.run(main(found, args.tasks, args.rounds, args.kind, outcome))
