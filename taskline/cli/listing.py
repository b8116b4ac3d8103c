"""taskline ls: tasks newest first, or (--follow) as they come and change."""

from __future__ import annotations

import argparse
import time
from collections import OrderedDict
from itertools import islice

from taskline.cli.common import OK, UsageError, api_options, client_from, json_option, out, to_json
from taskline.cli.show import HEADER, row
from taskline.client import Client
from tasks.models import TaskStatus
from tasks.schemas import TaskOut

FOLLOW_WINDOW = 100  # --follow watches the newest this many tasks (or --limit, up to 500)
SEEN_CAPACITY = 10_000

LS_EXAMPLES = """\
examples:
  taskline ls                                  # the 20 newest tasks
  taskline ls --status failed --kind resize    # the dead-letter view of one kind
  taskline ls --limit 1000 --json | jq '.[].id'
  taskline ls --follow                         # new tasks and status changes, as they happen

--follow prints the listing oldest first, then a line for each new task, and
again for a task whose status changed (among the newest 100), checking every
--interval seconds; with --json, one JSON object per line. Ctrl-C stops it.
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ls = commands.add_parser(
        "ls", parents=[api_options(), json_option()], help="list tasks, newest first",
        description="GET /tasks: tasks newest first, following the keyset pages.",
        epilog=LS_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    ls.add_argument("--status", choices=[status.value for status in TaskStatus])
    ls.add_argument("--kind")
    ls.add_argument("-n", "--limit", type=int, default=20, metavar="N", help="at most N (20)")
    ls.add_argument("-f", "--follow", action="store_true", help="keep printing as tasks change")
    ls.add_argument("--interval", type=float, default=1.0, metavar="S", help="with --follow")
    ls.set_defaults(run=run_ls)


def run_ls(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if not 0.1 <= args.interval <= 3600:
        raise UsageError("--interval must be 0.1..3600 seconds")
    with client_from(args) as client:
        if args.follow:
            return follow(args, client)
        pages = client.list_tasks(
            status=args.status, kind=args.kind, page_size=min(args.limit, 500)
        )
        tasks = list(islice(pages, args.limit))
    if args.json:
        out(to_json(tasks))
    else:
        out("\n".join([HEADER, *map(row, tasks)]))
    return OK


def follow(args: argparse.Namespace, client: Client) -> int:
    window = max(FOLLOW_WINDOW, min(args.limit, 500))
    seen: OrderedDict[tuple[str, str], None] = OrderedDict()
    if not args.json:
        out(HEADER)
    first = True
    try:
        while True:
            page = client.list_page(status=args.status, kind=args.kind, limit=window)
            new = [task for task in page.items if _key(task) not in seen]
            for task in new:
                _remember(seen, task)
            for task in reversed(new[: args.limit] if first else new):
                out(to_json(task) if args.json else row(task))
            first = False
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return OK


def _key(task: TaskOut) -> tuple[str, str]:
    return (str(task.id), str(task.status))


def _remember(seen: OrderedDict[tuple[str, str], None], task: TaskOut) -> None:
    seen[_key(task)] = None
    while len(seen) > SEEN_CAPACITY:
        seen.popitem(last=False)
