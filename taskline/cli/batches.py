"""taskline submit --from-file: JSON lines sent in batches, one POST /tasks/batch
per --batch-size lines (a few at a time), with the progress bar and summary of
bulk.py. A line refused by the API is counted by its status, as before; a line
that is not a JSON object is refused here and never sent."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from taskline.cli.bulk import Job, Tally, progress, report
from taskline.cli.common import UsageError, async_client_from
from taskline.client import AsyncClient, Refused, TasklineError, Unreachable

MAX_LINE_BYTES = 1024 * 1024  # POST /tasks refuses bigger bodies anyway
# Line bytes per request: half the API's 8 MiB, since a line may grow when its
# JSON is written again (non-ASCII characters escaped).
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_BATCH_SIZE = 1000


@dataclass(frozen=True)
class Line:
    number: int
    body: dict[str, Any]

    @property
    def job(self) -> Job:  # how a refusal of it is counted and listed
        return Job(self.number, f"line {self.number}")


def submit_file(args: argparse.Namespace) -> int:
    path = args.from_file
    if not 1 <= args.batch_size <= MAX_BATCH_SIZE:
        raise UsageError(f"--batch-size must be 1..{MAX_BATCH_SIZE}")
    if not 1 <= args.concurrency <= 100:
        raise UsageError("--concurrency must be 1..100")
    if path != "-" and not Path(path).is_file():
        raise UsageError(f"--from-file: no such file: {path}")
    total = None if path == "-" else count_lines(Path(path))
    tally = asyncio.run(send_file(args, path, total))
    return report(args, tally, "submitted")


async def send_file(args: argparse.Namespace, path: str, total: int | None) -> Tally:
    """`--concurrency` batches in flight; the file is read while they are."""
    tally = Tally()
    queue: asyncio.Queue[list[Line] | None] = asyncio.Queue(maxsize=args.concurrency)
    async with async_client_from(args) as client:
        with progress("submitting", total) as advance:

            async def feed() -> None:
                try:
                    with _open(path) as stream:
                        for batch in batches(stream, args.batch_size, tally, advance):
                            if tally.stopped:
                                break
                            await queue.put(batch)
                finally:
                    for _ in range(args.concurrency):
                        await queue.put(None)

            async def work() -> None:
                while (batch := await queue.get()) is not None:
                    if not tally.stopped:
                        await send_batch(client, batch, tally)
                    advance(len(batch))

            await asyncio.gather(feed(), *(work() for _ in range(args.concurrency)))
    return tally


async def send_batch(client: AsyncClient, batch: list[Line], tally: Tally) -> None:
    """One request; each line counted by its own result. A refusal of the whole
    request (413, 401, ...) refuses each of its lines with it."""
    try:
        answer = await client.create_tasks([line.body for line in batch], ids_only=True)
    except Unreachable as error:
        if tally.stopped is None:  # batches in flight fail together: name the first
            tally.stopped = f"at line {batch[0].number}: {error}"
        return
    except TasklineError as error:
        if not isinstance(error, Refused):  # 5xx
            tally.server_failed = True
        for line in batch:
            tally.refuse(line.job, str(error.status or "error"), error.detail)
        return
    for line, result in zip(batch, answer.results, strict=True):
        if result.status in (200, 201):  # 200: a replayed idempotency_key
            tally.accepted += 1
        else:
            detail = result.error.detail if result.error is not None else ""
            tally.refuse(line.job, str(result.status), detail)


def batches(
    stream: BinaryIO, size: int, tally: Tally, advance: Callable[..., None]
) -> Iterator[list[Line]]:
    """The lines to send, `size` (and at most MAX_BATCH_BYTES) at a time; a line
    that is not a JSON object is refused here, a blank line skipped."""
    batch: list[Line] = []
    batch_bytes = 0
    for number, raw in enumerate(bounded_lines(stream), 1):
        body = parse_line(number, raw, tally)
        if body is None:
            advance()  # refused or blank: counted by the bar all the same
            continue
        if batch and batch_bytes + len(raw or b"") > MAX_BATCH_BYTES:
            yield batch
            batch, batch_bytes = [], 0
        batch.append(Line(number, body))
        batch_bytes += len(raw or b"")
        if len(batch) == size:
            yield batch
            batch, batch_bytes = [], 0
    if batch:
        yield batch


def parse_line(number: int, raw: bytes | None, tally: Tally) -> dict[str, Any] | None:
    job = Job(number, f"line {number}")
    if raw is None:
        tally.refuse(job, "too long", f"over {MAX_LINE_BYTES} bytes")
        return None
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        tally.refuse(job, "not JSON", str(error))
        return None
    if not isinstance(body, dict):
        tally.refuse(job, "not JSON", "a line must be a JSON object")
        return None
    return body


@contextmanager
def _open(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer
    else:
        with open(path, "rb") as stream:
            yield stream


def count_lines(path: Path) -> int:
    count, last = 0, b"\n"
    with path.open("rb") as stream:
        while chunk := stream.read(1024 * 1024):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def bounded_lines(stream: BinaryIO) -> Iterator[bytes | None]:
    """Lines of at most MAX_LINE_BYTES; None for a longer one, which is skipped unread."""
    while line := stream.readline(MAX_LINE_BYTES + 1):
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := stream.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield None
        else:
            yield line
