"""`taskline`: the parser, and the exit code each outcome gets."""

from __future__ import annotations

import argparse
import os
import sys

from auth import cli as keys
from taskline.cli import commands, common, listing, serve, watch
from taskline.client import ConfigError, Refused, TasklineError

DESCRIPTION = """\
Run Taskline (dev, api, worker, gateway, migrate), manage its API keys (keys)
and work with its API from a shell.

The API commands talk to TASKLINE_URL (default http://127.0.0.1:8000, or
--url), sending TASKLINE_API_KEY as a bearer token when it is set."""

EXAMPLES = f"""\
examples:
  taskline dev                                    # what `make run` starts
  taskline submit echo --message "Hello World" --wait
  taskline submit sleep --payload '{{"seconds": 5}}' --priority 0
  taskline submit --from-file tasks.jsonl         # progress bar, then a summary
  taskline get 0193a4c2-...  --json
  taskline ls --status failed
  taskline retry --failed
  taskline queues
  taskline top

{common.EXIT_CODES}"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskline",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common.add_url_option(parser)
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.register(subcommands)
    commands.register(subcommands)
    listing.register(subcommands)
    watch.register(subcommands)
    keys.register(subcommands)  # `taskline keys`: straight against the database
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(run(args))


def run(args: argparse.Namespace) -> int:
    try:
        code: int = args.run(args)
    except (common.UsageError, ConfigError) as error:
        common.err(str(error))
        return common.USAGE
    except Refused as error:
        common.err(str(error))
        return common.REFUSED
    except TasklineError as error:  # no answer, or a 5xx
        common.err(str(error))
        return common.UNREACHABLE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `taskline ls | head`: the reader left; so do we, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return common.OK
    return code
