"""`taskline`: the parser and the commands."""

from __future__ import annotations

import argparse
import sys

from taskline.cli import serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskline", description="Taskline task service")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.register(subcommands)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    sys.exit(code)
