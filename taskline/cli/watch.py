"""taskline queues (once) and taskline top (a live view of the queues and workers)."""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from taskline.cli.common import OK, UsageError, api_options, client_from, console, json_option, out
from taskline.cli.common import to_json as models_json
from taskline.cli.show import queues_table, workers_table
from taskline.client import Client, TasklineError
from tasks.schemas import QueueOut

TOP_HELP = """\
Every --interval seconds: each queue's pending (ready + scheduled) and
processing tasks, how long its oldest ready task has waited, and how fast its
pending count grows (+) or drains (-); below, each live worker's queues, slots
busy of total and heartbeat age. Ctrl-C quits; --count 1 prints one view and
exits (for scripts). With --json, one line of JSON per refresh:
{"at": ..., "queues": [...], "workers": [...]}.
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parents = [api_options(), json_option()]
    queues = commands.add_parser(
        "queues", parents=parents, help="queues and their counts",
        description="GET /queues: pending (ready + scheduled) and processing tasks per queue.",
    )  # fmt: skip
    queues.set_defaults(run=run_queues)
    top = commands.add_parser(
        "top", parents=parents, help="a live view of the queues and workers",
        description=TOP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    top.add_argument("--interval", type=float, default=1.0, metavar="S", help="refresh every S")
    top.add_argument("-n", "--count", type=int, metavar="N", help="stop after N refreshes")
    top.set_defaults(run=run_top)


def run_queues(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        queues = client.list_queues()
    if args.json:
        out(models_json(queues))
    else:
        console().print(queues_table(queues))
    return OK


class Trends:
    """How fast each queue's pending count changes, between two refreshes."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, float]] = {}

    def update(self, queues: list[QueueOut]) -> dict[str, str]:
        now = time.monotonic()
        trends = {}
        for queue in queues:
            before = self._last.get(queue.name)
            if before is not None and now > before[1]:
                rate = (queue.pending - before[0]) / (now - before[1])
                trends[queue.name] = f"{rate:+.1f}"
            self._last[queue.name] = (queue.pending, now)
        return trends


def run_top(args: argparse.Namespace) -> int:
    if not 0.1 <= args.interval <= 3600:
        raise UsageError("--interval must be 0.1..3600 seconds")
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be at least 1")
    with client_from(args) as client:
        try:
            if args.json:
                _print_snapshots(args, client)
            else:
                _live(args, client)
        except KeyboardInterrupt:
            pass
    return OK


def _refreshes(args: argparse.Namespace) -> Iterable[int]:
    return range(args.count) if args.count is not None else itertools.count()


def _print_snapshots(args: argparse.Namespace, client: Client) -> None:
    for number in _refreshes(args):
        if number:
            time.sleep(args.interval)
        queues, workers = client.list_queues(), client.list_workers()
        at = datetime.now(UTC).isoformat()
        lists = {"queues": models_json(queues), "workers": models_json(workers)}
        out(json.dumps({"at": at, **{name: json.loads(text) for name, text in lists.items()}}))


def _live(args: argparse.Namespace, client: Client) -> None:
    trends = Trends()
    screen = console()
    with Live(Text("…"), console=screen, auto_refresh=False) as live:
        for number in _refreshes(args):
            if number:
                time.sleep(args.interval)
            live.update(_view(args, client, trends), refresh=True)
    if not screen.is_terminal:  # only the last view was printed, without an end of line
        screen.line()


def _view(args: argparse.Namespace, client: Client, trends: Trends) -> Group:
    now = datetime.now().strftime("%H:%M:%S")
    title = Text(f"Taskline {client.connection.base_url}   {now}   every {args.interval:g}s")
    title.stylize("bold")
    try:
        queues = client.list_queues()
    except TasklineError as error:  # keep watching: the server may come back
        return Group(title, Text(f"no answer: {error}", style="red"))
    return Group(
        title, Text(""), queues_table(queues, trends.update(queues)), Text(""), _workers(client)
    )


def _workers(client: Client) -> Table | Text:
    try:
        workers = client.list_workers()
    except TasklineError as error:  # a 404 from an API older than GET /workers, say
        return Text(f"workers: {error}", style="red")
    return workers_table(workers) if workers else Text("no live worker", style="yellow")
