"""taskline submit, get, cancel, retry: one task at a time (bulk forms in bulk.py and
batches.py)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from taskline.cli import batches, bulk
from taskline.cli.common import (
    OK,
    TASK_NOT_COMPLETED,
    WAIT_TIMED_OUT,
    UsageError,
    api_options,
    client_from,
    err,
    json_option,
    out,
    to_json,
)
from taskline.cli.show import detail
from taskline.client import WaitTimedOut
from tasks.schemas import TaskOut

MAX_PAYLOAD_FILE_BYTES = 1024 * 1024  # the API refuses bigger bodies anyway
Formatter = argparse.RawDescriptionHelpFormatter

SUBMIT_EXAMPLES = """\
examples:
  taskline submit echo --message "Hello World"          # prints the new task's id
  taskline submit echo -m hi --wait                     # waits, prints the finished task
  taskline submit sleep --payload '{"seconds": 5}' --priority 0 --queue urgent
  taskline submit resize --payload @args.json --json    # payload from a file (@- reads stdin)
  taskline submit --from-file tasks.jsonl               # one POST /tasks body per line,
                                                        # sent 1,000 lines a request

With --wait the exit code is 0 only if the task completed (4: failed, canceled
or expired; 5: --timeout passed first).
"""
RETRY_EXAMPLES = """\
examples:
  taskline retry 0193a4c2-...
  taskline retry --failed --kind resize       # prints what was retried and what was refused
"""
# Options of `submit KIND` and the task field each one sets.
TASK_OPTIONS = {
    "message": "message",
    "priority": "priority",
    "queue": "queue",
    "owner": "owner",
    "delay": "delay_seconds",
    "max_attempts": "max_attempts",
}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parents = [api_options(), json_option()]
    submit = commands.add_parser(
        "submit", parents=parents, help="create a task (or many, --from-file)",
        description="Create a task: POST /tasks.", epilog=SUBMIT_EXAMPLES,
        formatter_class=Formatter,
    )  # fmt: skip
    submit.add_argument("kind", nargs="?", metavar="KIND", help="the handler that runs it")
    submit.add_argument("-m", "--message", help="what the task is about (default: KIND)")
    submit.add_argument("-p", "--payload", metavar="JSON|@FILE", help="the handler's arguments")
    submit.add_argument("--priority", type=int, help="0 runs first (0..9)")
    submit.add_argument("-q", "--queue", help="the queue (default from KIND_RULES, else default)")
    submit.add_argument("--owner", help="the user or tenant it is for")
    submit.add_argument("--delay", type=float, metavar="S", help="not before S seconds from now")
    submit.add_argument("--max-attempts", type=int, metavar="N")
    submit.add_argument("--idempotency-key", metavar="KEY", help="the same key twice: one task")
    submit.add_argument("-w", "--wait", action="store_true", help="wait until it has finished")
    submit.add_argument("--timeout", type=float, metavar="S", help="with --wait: give up after S")
    bulk.add_file_options(submit)
    submit.set_defaults(run=run_submit)

    for name, run, summary in (
        ("get", run_get, "show a task"),
        ("cancel", run_cancel, "cancel a task (a running one is stopped by its worker)"),
    ):
        command = commands.add_parser(name, parents=parents, help=summary, description=summary)
        command.add_argument("id", metavar="ID")
        command.set_defaults(run=run)

    retry = commands.add_parser(
        "retry", parents=parents, help="send a failed or canceled task round again",
        description="POST /tasks/{id}/retry: the task is pending again with a fresh attempt"
        " budget. --failed does it for every failed task (the dead-letter view).",
        epilog=RETRY_EXAMPLES,
        formatter_class=Formatter,
    )  # fmt: skip
    retry.add_argument("id", nargs="?", metavar="ID")
    retry.add_argument("--failed", action="store_true", help="every failed task")
    retry.add_argument("--kind", help="with --failed: only tasks of this kind")
    bulk.add_concurrency_option(retry)
    retry.set_defaults(run=run_retry)


def run_submit(args: argparse.Namespace) -> int:
    if args.from_file is not None:
        given = [*TASK_OPTIONS, "kind", "payload", "idempotency_key", "wait", "timeout"]
        if any(getattr(args, name) not in (None, False) for name in given):
            raise UsageError("--from-file takes the tasks from the file: no KIND or task options")
        return batches.submit_file(args)
    if args.kind is None:
        raise UsageError("submit needs KIND (or --from-file)")
    if args.timeout is not None and (not args.wait or args.timeout <= 0):
        raise UsageError("--timeout goes with --wait, and must be above 0")
    body = task_body(args)
    with client_from(args) as client:
        task = client.create_task_from(body, idempotency_key=args.idempotency_key)
        if not args.wait:
            out(to_json(task) if args.json else str(task.id))
            return OK
        print(f"waiting for {task.id} ...", file=sys.stderr, flush=True)
        try:
            task = client.wait(task.id, timeout_s=args.timeout)
        except WaitTimedOut as timed_out:
            show(args, timed_out.task)
            err(str(timed_out))
            return WAIT_TIMED_OUT
    show(args, task)
    return OK if task.status == "completed" else TASK_NOT_COMPLETED


def task_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"message": args.kind, "kind": args.kind}
    for option, field in TASK_OPTIONS.items():
        if getattr(args, option) is not None:
            body[field] = getattr(args, option)
    if args.payload is not None:
        body["payload"] = read_payload(args.payload)
    return body


def read_payload(text: str) -> dict[str, Any]:
    """JSON, or @FILE (@- for stdin) holding JSON: an object, at most 1 MiB."""
    if text.startswith("@"):
        name = text[1:]
        try:
            if name == "-":
                text = sys.stdin.read(MAX_PAYLOAD_FILE_BYTES + 1)
            else:
                with open(name, encoding="utf-8") as file:
                    text = file.read(MAX_PAYLOAD_FILE_BYTES + 1)
        except OSError as error:
            raise UsageError(f"--payload: cannot read {name}: {error.strerror}") from None
        if len(text) > MAX_PAYLOAD_FILE_BYTES:
            raise UsageError(f"--payload: {name} is over {MAX_PAYLOAD_FILE_BYTES} bytes")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"--payload is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise UsageError("--payload must be a JSON object")
    return payload


def show(args: argparse.Namespace, task: TaskOut) -> None:
    out(to_json(task) if args.json else detail(task))


def run_get(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        show(args, client.get_task(args.id))
    return OK


def run_cancel(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        task = client.cancel(args.id)
    if args.json:
        out(to_json(task))
    elif task.status == "canceled":
        out(f"canceled {task.id}")
    else:
        out(f"cancel requested for {task.id}: it is {task.status}; its worker will stop it")
    return OK


def run_retry(args: argparse.Namespace) -> int:
    if args.failed == (args.id is not None):
        raise UsageError("retry takes an ID or --failed")
    if args.failed:
        return bulk.retry_failed(args)
    if args.kind is not None:
        raise UsageError("--kind goes with --failed")
    with client_from(args) as client:
        task = client.retry(args.id)
    out(to_json(task) if args.json else f"retried {task.id}: {task.status} again")
    return OK
