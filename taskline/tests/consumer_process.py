"""A consumer made of `Client.consume`, as its own process (for a real SIGTERM).

    python -m taskline.tests.consumer_process URL QUEUE LOG

Each message: "start ID" written to LOG, a moment's work, "done ID" written.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from taskline.client import Client, LeasedMessage


def main() -> None:
    url, queue, log = sys.argv[1:4]
    journal = Path(log)

    def handle(message: LeasedMessage) -> None:
        with journal.open("a") as out:
            out.write(f"start {message.id}\n")
        time.sleep(0.3)
        with journal.open("a") as out:
            out.write(f"done {message.id}\n")

    with Client(url) as taskline:
        done = taskline.consume(queue, handle, max_messages=5, wait_seconds=1)
    print(f"acked={done.acked} nacked={done.nacked} lost={done.lost}", flush=True)


if __name__ == "__main__":
    main()
