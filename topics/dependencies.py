"""FastAPI dependencies of topics and HTTP consumers, as named `Annotated` aliases,
and what one API process keeps for them (opened and closed by the lifespan)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request

from app.lifespan import Resources
from topics.receipts import Receipts
from topics.schemas import ID_PATTERN
from topics.waiting import LongPoll


@dataclass(frozen=True)
class Consumers:
    long_poll: LongPoll
    receipts: Receipts


def open_consumers(resources: Resources) -> Consumers:
    return Consumers(LongPoll(resources), Receipts(resources))


async def close_consumers(consumers: Consumers) -> None:
    await consumers.long_poll.close()


async def get_consumers(request: Request) -> Consumers:
    consumers: Consumers = request.app.state.consumers
    return consumers


ConsumersDep = Annotated[Consumers, Depends(get_consumers)]
TopicId = Annotated[str, Path(pattern=ID_PATTERN, description="The topic's id.")]
QueueId = Annotated[str, Path(pattern=ID_PATTERN, description="The queue's id.")]
