"""HTTP routes of messages: publish, put, lease, ack, nack, extend, redrive."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Request, Response, status

from auth.caller import Scope
from auth.dependencies import AUTH_RESPONSES, CallerDep, needs
from tasks.dependencies import ResourcesDep
from tasks.schemas import ErrorOut
from topics import consuming, publishing
from topics.dependencies import ConsumersDep, QueueId, TopicId
from topics.message_schemas import (
    AckIn,
    ExtendIn,
    ExtendOut,
    LeaseIn,
    LeaseOut,
    MessageBatchIn,
    MessageIn,
    NackIn,
    PublishOut,
    RedriveIn,
    RedriveOut,
)
from topics.router import INVALID, QUEUE_NOT_FOUND, TOPIC_NOT_FOUND, UNAVAILABLE, Responses
from topics.waiting import unless_hung_up

# Publishing is writing work (tasks:write); leasing and settling deliveries is
# what an external worker does (consume); sending dead letters back, the
# operator's (admin). README "Access control".
router = APIRouter(tags=["messages"], responses=AUTH_RESPONSES)
WRITE = needs(Scope.TASKS_WRITE)
CONSUME = needs(Scope.CONSUME)

RECEIPT: Responses = {
    404: {"model": ErrorOut, "description": "No such message (its queue was deleted)."},
    409: {
        "model": ErrorOut,
        "description": "The handle does not hold the message: forged, of another message,"
        " or its delivery is over (acked, nacked, or past its deadline).",
    },
    422: {"description": "Invalid body, or a receipt_handle that is not one."},
    **UNAVAILABLE,
}
PUBLISHED = "Created: the messages, one per queue they went to (empty when none matched)."


def _messages(body: MessageIn | MessageBatchIn) -> list[MessageIn]:
    return body.messages if isinstance(body, MessageBatchIn) else [body]


@router.post(
    "/topics/{topic_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=PublishOut,
    responses={201: {"description": PUBLISHED}, **TOPIC_NOT_FOUND, **INVALID, **UNAVAILABLE},
    summary="Publish to a topic",
    dependencies=WRITE,
)
async def publish(
    topic_id: TopicId, body: MessageIn | MessageBatchIn, resources: ResourcesDep, caller: CallerDep
) -> PublishOut:
    """One message `{"data", "attributes"}`, or up to 500 as `{"messages": [...]}`.
    Each goes to every subscribed queue whose filters it matches, all in one
    transaction; a message that matches none is dropped. The messages belong to
    the key's owner, as its tasks do."""
    published = await publishing.publish(
        resources=resources, topic_id=topic_id, messages=_messages(body),
        owner=caller.owner_for(None),
    )  # fmt: skip
    return PublishOut(messages=published)


@router.post(
    "/queues/{queue_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=PublishOut,
    responses={201: {"description": PUBLISHED}, **QUEUE_NOT_FOUND, **INVALID, **UNAVAILABLE},
    summary="Put messages on one queue",
    dependencies=WRITE,
    tags=["queues"],
)
async def put(
    queue_id: QueueId, body: MessageIn | MessageBatchIn, resources: ResourcesDep, caller: CallerDep
) -> PublishOut:
    """Straight onto this queue, whatever its topic and filters."""
    published = await publishing.put(
        resources=resources, queue_id=queue_id, messages=_messages(body),
        owner=caller.owner_for(None),
    )  # fmt: skip
    return PublishOut(messages=published)


@router.post(
    "/queues/{queue_id}/lease",
    response_model=LeaseOut,
    responses={**QUEUE_NOT_FOUND, **INVALID, **UNAVAILABLE},
    summary="Lease messages",
    dependencies=CONSUME,
    tags=["queues"],
)
async def lease(
    queue_id: QueueId,
    body: LeaseIn,
    request: Request,
    resources: ResourcesDep,
    consumers: ConsumersDep,
) -> LeaseOut:
    """Up to `max_messages`, each with a receipt handle, held until the ack
    deadline (`visibility_seconds`, else the queue's). With `wait_seconds`, it
    answers as soon as a message is there, or empty when the wait is over; a
    client that hangs up while it waits takes nothing."""
    leasing = consuming.lease(
        resources=resources,
        long_poll=consumers.long_poll,
        receipts=consumers.receipts,
        queue_id=queue_id,
        body=body,
    )
    messages = await unless_hung_up(request, leasing) if body.wait_seconds else await leasing
    return LeaseOut(messages=messages or [])


@router.post(
    "/queues/{queue_id}/redrive",
    response_model=RedriveOut,
    responses={**QUEUE_NOT_FOUND, **INVALID, **UNAVAILABLE},
    summary="Send dead letters back",
    dependencies=needs(Scope.ADMIN),
    tags=["queues"],
)
async def redrive(
    queue_id: QueueId, resources: ResourcesDep, body: Annotated[RedriveIn | None, Body()] = None
) -> RedriveOut:
    """Messages that left this queue after message_max_deliveries (waiting in its
    dead queue, or ended failed in it) come back to it with fresh deliveries."""
    limit = (body or RedriveIn()).max_messages
    count = await consuming.redrive(resources=resources, queue_id=queue_id, limit=limit)
    return RedriveOut(redriven=count)


@router.post(
    "/messages/{message_id}/ack",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=RECEIPT,
    summary="Acknowledge a delivery",
    dependencies=CONSUME,
)
async def ack(
    message_id: uuid.UUID, body: AckIn, resources: ResourcesDep, consumers: ConsumersDep
) -> Response:
    """Done: the message is not delivered again (its task is `completed`)."""
    await consuming.ack(
        resources=resources,
        receipts=consumers.receipts,
        message_id=message_id,
        handle=body.receipt_handle,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/messages/{message_id}/nack",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=RECEIPT,
    summary="Give a delivery back",
    dependencies=CONSUME,
)
async def nack(
    message_id: uuid.UUID, body: NackIn, resources: ResourcesDep, consumers: ConsumersDep
) -> Response:
    """Visible again at once, or after `delay_seconds`. The delivery counts:
    after message_max_deliveries it goes to the dead queue, or ends failed."""
    await consuming.nack(
        resources=resources,
        receipts=consumers.receipts,
        message_id=message_id,
        handle=body.receipt_handle,
        delay_s=body.delay_seconds,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/messages/{message_id}/extend",
    response_model=ExtendOut,
    responses=RECEIPT,
    summary="Extend a delivery's deadline",
    dependencies=CONSUME,
)
async def extend(
    message_id: uuid.UUID, body: ExtendIn, resources: ResourcesDep, consumers: ConsumersDep
) -> ExtendOut:
    """The deadline becomes `visibility_seconds` from now; refused (409) once it has passed."""
    deadline = await consuming.extend(
        resources=resources,
        receipts=consumers.receipts,
        message_id=message_id,
        handle=body.receipt_handle,
        visibility_s=body.visibility_seconds,
    )
    return ExtendOut(id=message_id, lease_expires_at=deadline)
