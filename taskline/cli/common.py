"""What the API commands share: exit codes, options, the client, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from rich.console import Console

from taskline.client import AsyncClient, Client

# Exit codes (documented in `taskline --help` and the README).
OK = 0
REFUSED = 1  # the API answered 4xx
USAGE = 2  # bad arguments; argparse uses 2 too
UNREACHABLE = 3  # no answer, or a 5xx
TASK_NOT_COMPLETED = 4  # --wait: the task ended failed, canceled or expired
WAIT_TIMED_OUT = 5  # --wait: --timeout passed first

EXIT_CODES = f"""\
exit codes:
  {OK}  done
  {REFUSED}  the API refused the request (4xx: unknown id, conflict, invalid input, rate limit)
  {USAGE}  usage: bad arguments, a bad TASKLINE_URL, a payload that is not a JSON object
  {UNREACHABLE}  the server is unreachable, or answered 5xx (503 while a store is down)
  {TASK_NOT_COMPLETED}  submit --wait: the task ended failed, canceled or expired
  {WAIT_TIMED_OUT}  submit --wait: --timeout passed before the task ended
"""


class UsageError(Exception):
    """Arguments that parse but make no sense together: exit 2."""


URL_HELP = (
    "the API (default: TASKLINE_URL, else http://127.0.0.1:8000);"
    " TASKLINE_API_KEY is sent as a bearer token when set"
)


def add_url_option(parser: argparse.ArgumentParser) -> None:
    """`taskline --url U get ID` and `taskline get ID --url U` both work."""
    parser.add_argument("--url", metavar="URL", default=None, help=URL_HELP)


def api_options() -> argparse.ArgumentParser:
    """--url on every command that talks to the API; SUPPRESS keeps a --url given
    before the command from being reset by the command's own default."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--url", metavar="URL", default=argparse.SUPPRESS, help=URL_HELP)
    return parent


def json_option() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parent


def client_from(args: argparse.Namespace) -> Client:
    return Client(args.url)


def async_client_from(args: argparse.Namespace) -> AsyncClient:
    return AsyncClient(args.url)


def to_json(value: BaseModel | Iterable[BaseModel] | dict[str, Any]) -> str:
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, dict):
        return json.dumps(value)
    return json.dumps([item.model_dump(mode="json") for item in value])


def out(text: str) -> None:
    print(text, flush=True)


def err(text: str) -> None:
    print(f"taskline: {text}", file=sys.stderr, flush=True)


def console(*, stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False)
