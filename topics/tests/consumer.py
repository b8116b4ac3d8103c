"""An HTTP consumer as its own process, written against the HTTP API only (and
the test's `deliveries` table): what a consumer in any language would do.

    python -m topics.tests.consumer URL QUEUE [--name NAME] [--hold N --visibility S]

Consuming: lease up to 10 (waiting up to a second), record each delivery,
ack it; SIGTERM stops it between leases. Holding: lease N once and keep them
without ever acking (for a SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

import asyncpg
import httpx


async def consume(http: httpx.AsyncClient, queue: str, name: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    db = await asyncpg.connect(os.environ["DELIVERIES_DSN"])
    try:
        while not stop.is_set():
            body = {"max_messages": 10, "wait_seconds": 1, "consumer": name}
            response = await http.post(f"/queues/{queue}/lease", json=body)
            response.raise_for_status()
            for message in response.json()["messages"]:
                await handle(http, db, message, name)
    finally:
        await db.close()


async def handle(
    http: httpx.AsyncClient, db: asyncpg.Connection, message: dict[str, object], name: str
) -> None:
    await db.execute(
        "INSERT INTO deliveries (message_id, attempt, consumer) VALUES ($1, $2, $3)",
        message["id"],
        message["delivery_attempts"],
        name,
    )
    await db.execute(
        "UPDATE deliveries SET finished_at = clock_timestamp()"
        " WHERE message_id = $1 AND attempt = $2",
        message["id"],
        message["delivery_attempts"],
    )
    ack = await http.post(
        f"/messages/{message['id']}/ack", json={"receipt_handle": message["receipt_handle"]}
    )
    ack.raise_for_status()


async def hold(http: httpx.AsyncClient, queue: str, name: str, count: int, vis_s: float) -> None:
    body = {"max_messages": count, "wait_seconds": 5, "visibility_seconds": vis_s, "consumer": name}
    response = await http.post(f"/queues/{queue}/lease", json=body)
    response.raise_for_status()
    print(f"holding {len(response.json()['messages'])}", flush=True)
    await asyncio.Event().wait()  # until killed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("queue")
    parser.add_argument("--name", default="http-consumer")
    parser.add_argument("--hold", type=int, default=0)
    parser.add_argument("--visibility", type=float, default=30)
    args = parser.parse_args()
    async with httpx.AsyncClient(base_url=args.url, timeout=30) as http:
        if args.hold:
            await hold(http, args.queue, args.name, args.hold, args.visibility)
        else:
            await consume(http, args.queue, args.name)


if __name__ == "__main__":
    asyncio.run(main())
