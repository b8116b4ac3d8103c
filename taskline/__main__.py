"""`python -m taskline`: the `taskline` command."""

from taskline.cli import main

main()
