"""HTTP routes of topics and queues as resources: parse, call the service, shape
the answer. (GET /queues, the counts of every queue, is the tasks' own.)"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from auth.caller import Scope
from auth.dependencies import AUTH_RESPONSES, needs
from tasks.dependencies import ResourcesDep
from tasks.schemas import ErrorOut
from topics import service
from topics.dependencies import QueueId, TopicId
from topics.schemas import (
    ID_PATTERN,
    QueueCreate,
    QueuePatch,
    QueueResource,
    QueueStats,
    TopicCreate,
    TopicOut,
    TopicPage,
)

# Topics and queues are the operator's: an admin key manages them; a key with
# queues:read reads them and a queue's counts (README "Access control").
topics_router = APIRouter(prefix="/topics", tags=["topics"], responses=AUTH_RESPONSES)
queues_router = APIRouter(prefix="/queues", tags=["queues"], responses=AUTH_RESPONSES)
READ = needs(Scope.QUEUES_READ)
ADMIN = needs(Scope.ADMIN)

Responses = dict[int | str, dict[str, Any]]
UNAVAILABLE: Responses = {
    503: {"model": ErrorOut, "description": "PostgreSQL or Redis is unreachable; retry later."}
}
INVALID: Responses = {422: {"description": "Invalid body, path or query."}}
TOPIC_NOT_FOUND: Responses = {404: {"model": ErrorOut, "description": "No such topic."}}
QUEUE_NOT_FOUND: Responses = {404: {"model": ErrorOut, "description": "No such queue."}}


@topics_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TopicOut,
    responses={
        409: {"model": ErrorOut, "description": "A topic with this id exists."},
        **INVALID,
        **UNAVAILABLE,
    },
    summary="Create a topic",
    dependencies=ADMIN,
)
async def create_topic(body: TopicCreate, resources: ResourcesDep, response: Response) -> TopicOut:
    topic = await service.create_topic(resources=resources, topic_id=body.id)
    response.headers["Location"] = f"/topics/{topic.id}"
    return topic


@topics_router.get(
    "",
    response_model=TopicPage,
    responses={**INVALID, **UNAVAILABLE},
    summary="List topics",
    dependencies=READ,
)
async def list_topics(
    resources: ResourcesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> TopicPage:
    """In id order. Pass the `next_cursor` of one page as `cursor` to get the next."""
    items, next_cursor = await service.list_topics(resources=resources, cursor=cursor, limit=limit)
    return TopicPage(items=items, next_cursor=next_cursor)


@topics_router.get(
    "/{topic_id}",
    response_model=TopicOut,
    responses={**TOPIC_NOT_FOUND, **INVALID, **UNAVAILABLE},
    summary="Get a topic",
    dependencies=READ,
)
async def get_topic(topic_id: TopicId, resources: ResourcesDep) -> TopicOut:
    return await service.get_topic(resources=resources, topic_id=topic_id)


@topics_router.delete(
    "/{topic_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **TOPIC_NOT_FOUND,
        409: {"model": ErrorOut, "description": "Queues subscribe to it and force is not set."},
        **INVALID,
        **UNAVAILABLE,
    },
    summary="Delete a topic",
    dependencies=ADMIN,
)
async def delete_topic(
    topic_id: TopicId,
    resources: ResourcesDep,
    force: Annotated[bool, Query(description="Detach subscribed queues first.")] = False,
) -> Response:
    """Refused while queues subscribe to it, unless `force=true`: then they are
    detached, keep their messages and receive no new ones."""
    await service.delete_topic(resources=resources, topic_id=topic_id, force=force)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@queues_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=QueueResource,
    responses={
        404: {"model": ErrorOut, "description": "No topic topic_id, or no queue dead_queue_id."},
        409: {
            "model": ErrorOut,
            "description": "A queue with this id exists, or dead_queue_id is the queue itself.",
        },
        **INVALID,
        **UNAVAILABLE,
    },
    summary="Create a queue",
    dependencies=ADMIN,
)
async def create_queue(
    body: QueueCreate, resources: ResourcesDep, response: Response
) -> QueueResource:
    """A queue subscribed to `topic_id` receives the topic's messages that match
    its filters. Its id is also a queue name for Python workers (WORKER_QUEUES)."""
    queue = await service.create_queue(resources=resources, body=body)
    response.headers["Location"] = f"/queues/{queue.id}"
    return queue


@queues_router.get(
    "/{queue_id}",
    response_model=QueueResource,
    responses={**QUEUE_NOT_FOUND, **INVALID, **UNAVAILABLE},
    summary="Get a queue",
    dependencies=READ,
)
async def get_queue(queue_id: QueueId, resources: ResourcesDep) -> QueueResource:
    return await service.get_queue(resources=resources, queue_id=queue_id)


@queues_router.patch(
    "/{queue_id}",
    response_model=QueueResource,
    responses={
        404: {
            "model": ErrorOut,
            "description": "No such queue, no topic topic_id, or no queue dead_queue_id.",
        },
        409: {"model": ErrorOut, "description": "dead_queue_id is the queue itself."},
        **INVALID,
        **UNAVAILABLE,
    },
    summary="Change a queue",
    dependencies=ADMIN,
)
async def patch_queue(
    queue_id: QueueId, body: QueuePatch, resources: ResourcesDep
) -> QueueResource:
    """Only the fields given change; null clears topic_id, dead_queue_id,
    message_max_deliveries or message_filters. message_max_deliveries and
    message_retention_seconds apply to messages that arrive afterwards."""
    return await service.update_queue(resources=resources, queue_id=queue_id, body=body)


@queues_router.delete(
    "/{queue_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**QUEUE_NOT_FOUND, **INVALID, **UNAVAILABLE},
    summary="Delete a queue and its messages",
    dependencies=ADMIN,
)
async def delete_queue(queue_id: QueueId, resources: ResourcesDep) -> Response:
    """The queue is gone for the API at once; its messages are then deleted
    1,000 at a time. If the request is interrupted, DELETE it again to finish."""
    await service.delete_queue(resources=resources, queue_id=queue_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@queues_router.get(
    "/{queue_id}/stats",
    response_model=QueueStats,
    responses={**QUEUE_NOT_FOUND, **INVALID, **UNAVAILABLE},
    summary="Counts of a queue",
    dependencies=READ,
)
async def queue_stats(queue_id: QueueId, resources: ResourcesDep) -> QueueStats:
    """What GET /queues reports for this queue, and its message counts."""
    return await service.queue_stats(resources=resources, queue_id=queue_id)
