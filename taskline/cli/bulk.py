"""taskline retry --failed, and what submit --from-file (batches.py) shares with it:
many calls, a few at a time, with a progress bar and a summary of what was
accepted and what was refused."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from taskline.cli.common import (
    OK,
    REFUSED,
    UNREACHABLE,
    UsageError,
    async_client_from,
    console,
    out,
    to_json,
)
from taskline.client import AsyncClient, Refused, TasklineError, Unreachable

MAX_LINE_BYTES = 1024 * 1024  # the API refuses bigger bodies anyway
SHOWN_FAILURES = 10

Action = Callable[[AsyncClient], Awaitable[object]]


@dataclass(frozen=True)
class Job:
    order: int  # failures are listed in this order
    where: str  # "line 3", or a task id
    action: Action | None = None  # None: nothing to send, for `problem` (or a blank line)
    problem: tuple[str, str] | None = None  # (reason counted, detail)


@dataclass
class Tally:
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    server_failed: bool = False
    stopped: str | None = None

    def refuse(self, job: Job, reason: str, detail: str) -> None:
        self.refused[reason] += 1
        if len(self.failures) < SHOWN_FAILURES:
            self.failures.append((job.order, {"at": job.where, "reason": reason, "detail": detail}))

    def shown_failures(self) -> list[dict[str, str]]:
        """The first few refusals met, in input order."""
        return [failure for _, failure in sorted(self.failures, key=lambda pair: pair[0])]

    def exit_code(self) -> int:
        if self.server_failed or self.stopped:
            return UNREACHABLE
        return REFUSED if self.refused else OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "refused": dict(self.refused),
            "failures": self.shown_failures(),
            "stopped": self.stopped,
        }

    def text(self, verb: str) -> str:
        total = self.accepted + self.refused.total()
        lines = [f"{verb} {self.accepted} of {total}"]
        if self.refused:
            counts = ", ".join(f"{reason}: {n}" for reason, n in self.refused.most_common())
            lines[0] += f"; refused {self.refused.total()} ({counts})"
        for one in self.shown_failures():
            glue = " " if one["reason"].isdigit() else ": "  # "422 unknown kind", "not JSON: ..."
            lines.append(f"  {one['at']}: {one['reason']}{glue}{one['detail']}")
        if self.stopped:
            lines.append(f"stopped: {self.stopped}")
        return "\n".join(lines)


def add_concurrency_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency", type=int, default=8, metavar="N", help="requests at once (default 8)"
    )


def add_file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from-file", metavar="FILE", help="JSON lines, one POST /tasks body each (- for stdin)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=1000, metavar="N",
        help="lines sent together, one POST /tasks/batch (1..1000, default 1000)",
    )  # fmt: skip
    add_concurrency_option(parser)


# Running ----------------------------------------------------------------------


async def run_jobs(
    args: argparse.Namespace,
    make_jobs: Callable[[AsyncClient], AsyncIterator[Job]],
    *,
    what: str,
    total: int | None,
) -> Tally:
    if not 1 <= args.concurrency <= 100:
        raise UsageError("--concurrency must be 1..100")
    tally = Tally()
    queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=2 * args.concurrency)
    async with async_client_from(args) as client:
        with progress(what, total) as advance:

            async def feed() -> None:
                try:
                    async for job in make_jobs(client):
                        if tally.stopped:
                            break
                        await queue.put(job)
                except TasklineError as error:  # the listing behind the jobs failed
                    tally.stopped = str(error)
                finally:
                    for _ in range(args.concurrency):
                        await queue.put(None)

            async def work() -> None:
                while (job := await queue.get()) is not None:
                    if not tally.stopped:
                        await attempt(client, job, tally)
                    advance()

            await asyncio.gather(feed(), *(work() for _ in range(args.concurrency)))
    return tally


async def attempt(client: AsyncClient, job: Job, tally: Tally) -> None:
    if job.action is None:
        if job.problem is not None:
            reason, detail = job.problem
            tally.refuse(job, reason, detail)
        return
    try:
        await job.action(client)
    except Unreachable as error:
        tally.stopped = f"at {job.where}: {error}"
    except Refused as error:
        tally.refuse(job, str(error.status), error.detail)
    except TasklineError as error:  # 5xx
        tally.server_failed = True
        tally.refuse(job, str(error.status or "error"), error.detail)
    else:
        tally.accepted += 1


@contextmanager
def progress(what: str, total: int | None) -> Iterator[Callable[..., None]]:
    """A bar on stderr when it is a terminal; nothing otherwise. `advance(n=1)`."""
    screen = console(stderr=True)
    bar = Progress(
        TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=screen, disable=not screen.is_terminal,
    )  # fmt: skip
    with bar:
        task = bar.add_task(what, total=total)
        yield lambda count=1: bar.advance(task, count)


def report(args: argparse.Namespace, tally: Tally, verb: str) -> int:
    out(to_json(tally.as_dict()) if args.json else tally.text(verb))
    return tally.exit_code()


# retry --failed -------------------------------------------------------------------


def retry_failed(args: argparse.Namespace) -> int:
    """Every failed task (of --kind), newest first, while the listing goes on: a task
    retried here leaves the listing's status, and the keyset cursor never revisits it."""

    async def jobs(client: AsyncClient) -> AsyncIterator[Job]:
        tasks = client.list_tasks(status="failed", kind=args.kind, page_size=500)
        number = 0
        async for task in tasks:
            number += 1
            yield Job(number, str(task.id), _retry(task.id))

    tally = asyncio.run(run_jobs(args, jobs, what="retrying", total=None))
    return report(args, tally, "retried")


def _retry(task_id: uuid.UUID) -> Action:
    async def send(client: AsyncClient) -> object:
        return await client.retry(task_id)

    return send
