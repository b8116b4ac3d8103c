"""`taskline keys create|ls|revoke`: key management straight against the database,
so the first admin key can be made before any key exists.

    taskline keys create --owner ops --scopes admin
    taskline keys create --owner acme --scopes tasks:write,tasks:read --expires 90d
    taskline keys ls [--owner acme] [--all] [--json]
    taskline keys revoke 3f9c0a7d1e2b4c56

Each command is a function of the parsed arguments returning an exit code;
`register(subparsers)` adds them to any argparse command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from app.config import Settings, load_settings
from app.lifespan import Resources, close_resources, open_resources
from auth import service
from auth.caller import SCOPE_HELP, Scope
from auth.exceptions import AuthError
from auth.schemas import OWNER_PATTERN, KeyOut

OK, FAILED, USAGE = 0, 1, 2
EXAMPLES = (
    """\
scopes:
"""
    + "\n".join(f"  {scope.value:<12} {text}" for scope, text in SCOPE_HELP.items())
    + """

examples:
  taskline keys create --owner ops --scopes admin          # the first admin key
  taskline keys create --owner acme --scopes tasks:write,tasks:read --expires 90d
  taskline keys ls --owner acme
  taskline keys revoke 3f9c0a7d1e2b4c56
"""
)
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = subparsers.add_parser(
        "keys",
        help="create, list and revoke API keys (talks to the database)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = commands.add_parser("create", help="make a key; its secret is printed once")
    create.add_argument("--owner", required=True, type=owner_name, help="the tenant it acts for")
    scopes_help = "comma-separated: " + ", ".join(Scope)
    create.add_argument("--scopes", required=True, type=scope_list, help=scopes_help)
    expires_help = "a lifetime (30d, 12h, 90m) or an ISO 8601 time with a zone"
    create.add_argument("--expires", type=expiry, default=None, help=expires_help)
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(run=run_create)
    ls = commands.add_parser("ls", help="list keys, newest first (no secrets)")
    ls.add_argument("--owner", default=None, help="only this owner's keys")
    ls.add_argument("--all", action="store_true", help="revoked keys too")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(run=run_ls)
    revoke = commands.add_parser("revoke", help="revoke a key (every API process, within 1 s)")
    revoke.add_argument("key_id", metavar="ID", help="the key's id (as `keys ls` shows it)")
    revoke.set_defaults(run=run_revoke)


def owner_name(text: str) -> str:
    if not re.fullmatch(OWNER_PATTERN, text):
        raise argparse.ArgumentTypeError("an owner is 1..200 visible ASCII characters")
    return text


def scope_list(text: str) -> list[str]:
    scopes = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [scope for scope in scopes if scope not in set(Scope)]
    if not scopes or unknown:
        raise argparse.ArgumentTypeError(f"scopes are {', '.join(Scope)}; got {text!r}")
    return scopes


def expiry(text: str) -> datetime:
    found = _DURATION.fullmatch(text.strip())
    if found:
        return datetime.now(UTC) + timedelta(seconds=int(found[1]) * _UNIT_S[found[2]])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a lifetime (30d) or ISO time: {text!r}") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError("give the time with a zone, e.g. 2027-01-01T00:00Z")
    return when


def run_create(args: argparse.Namespace) -> int:
    async def create(resources: Resources) -> int:
        row, token = await service.create_key(
            resources=resources, owner=args.owner, scopes=args.scopes, expires_at=args.expires
        )
        shown = _shown(row)
        if args.json:
            print(json.dumps({**shown, "key": token}))
        else:
            print(token)
            print(f"id {row.id}, owner {row.owner}, scopes {','.join(row.scopes)}, expires "
                  f"{shown['expires_at'] or 'never'}. The key is shown this once.",
                  file=sys.stderr)  # fmt: skip
        return OK

    return _run(create)


def run_ls(args: argparse.Namespace) -> int:
    async def ls(resources: Resources) -> int:
        rows = await service.list_keys(
            resources=resources, owner=args.owner, include_revoked=args.all, limit=10_000
        )
        shown = [_shown(row) for row in rows]
        if args.json:
            print(json.dumps(shown))
            return OK
        columns: tuple[str, ...] = (
            "id",
            "owner",
            "scopes",
            "created_at",
            "expires_at",
            "last_used_at",
        )
        if args.all:
            columns += ("revoked_at",)
        lines = [columns] + [tuple(_cell(name, key[name]) for name in columns) for key in shown]
        widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
        for line in lines:
            cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
            print("  ".join(cells).rstrip())
        return OK

    return _run(ls)


def run_revoke(args: argparse.Namespace) -> int:
    async def revoke(resources: Resources) -> int:
        row = await service.revoke_key(resources=resources, key_id=args.key_id)
        print(f"revoked {row.id} (owner {row.owner})")
        return OK

    return _run(revoke)


def _run(command: Callable[[Resources], Awaitable[int]]) -> int:
    settings: Settings = load_settings()

    async def with_resources() -> int:
        resources = open_resources(settings)
        try:
            return await command(resources)
        finally:
            await close_resources(resources)

    try:
        return asyncio.run(with_resources())
    except AuthError as error:  # no such key, no AUTH_PEPPER
        print(f"taskline: {error.detail}", file=sys.stderr)
        return FAILED


def _shown(row: Any) -> dict[str, Any]:
    return KeyOut.model_validate(row).model_dump(mode="json")


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(value)
    if name.endswith("_at"):
        return str(value)[:19].replace("T", " ")  # to the second, UTC
    return str(value)
