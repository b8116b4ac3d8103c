"""Request and response bodies of topics and queues (the resources)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic.json_schema import SkipJsonSchema

from app.config import QUEUE_PATTERN
from tasks.schemas import NUMBER_ONLY, PropertyNames, QueueOut

ID_PATTERN = QUEUE_PATTERN  # a queue's id is its name for the workers, so topics follow suit
MAX_FILTER_ATTRIBUTES = 20
MAX_ATTRIBUTE_KEY_CHARS = 256
MAX_ATTRIBUTE_VALUE_CHARS = 1024

ResourceId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
AttributeKey = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ATTRIBUTE_KEY_CHARS, pattern=r"^[^\x00]+$")
]
AttributeValue = Annotated[
    str, StringConstraints(max_length=MAX_ATTRIBUTE_VALUE_CHARS, pattern=r"^[^\x00]*$")
]
ATTRIBUTE_KEY = PropertyNames(minLength=1, maxLength=MAX_ATTRIBUTE_KEY_CHARS, pattern=r"^[^\x00]+$")
AcceptedValues = Annotated[list[AttributeValue], Field(min_length=1, max_length=100)]
MessageFilters = Annotated[
    dict[AttributeKey, AcceptedValues], Field(max_length=MAX_FILTER_ATTRIBUTES), ATTRIBUTE_KEY
]
AckDeadline = Annotated[int, Field(ge=1, le=43200), NUMBER_ONLY]
Retention = Annotated[int, Field(ge=1, le=31 * 86400), NUMBER_ONLY]
MaxDeliveries = Annotated[int, Field(ge=1, le=100), NUMBER_ONLY]

_FILTERS_DOC = (
    "Attribute -> accepted values. A message matches when, for every attribute listed,"
    " its value is one of those listed. Empty: every message."
)


class TopicCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"id": "orders"}]})

    id: ResourceId = Field(description="Letters, digits, `_ . -`; 1..64 characters.")


class TopicOut(BaseModel):
    id: str
    created_at: datetime
    queues: list[str] = Field(description="Ids of the queues subscribed to it.")


class TopicPage(BaseModel):
    items: list[TopicOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class QueueCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "eu-orders",
                    "topic_id": "orders",
                    "ack_deadline_seconds": 30,
                    "message_retention_seconds": 86400,
                    "message_max_deliveries": 5,
                    "dead_queue_id": "orders-dead",
                    "message_filters": {"region": ["eu"]},
                }
            ]
        },
    )

    id: ResourceId = Field(description="Also its name for Python workers (WORKER_QUEUES).")
    topic_id: ResourceId | None = Field(None, description="The topic it subscribes to, if any.")
    ack_deadline_seconds: AckDeadline = Field(
        30, description="How long a lease lasts unless the lease asks otherwise."
    )
    message_retention_seconds: Retention = Field(
        7 * 86400, description="A message not acked by then expires."
    )
    message_max_deliveries: MaxDeliveries | None = Field(
        None, description="Deliveries before it dead-letters (or fails); unset: 100."
    )
    dead_queue_id: ResourceId | None = Field(
        None, description="Where messages go after message_max_deliveries."
    )
    message_filters: MessageFilters = Field(default_factory=dict, description=_FILTERS_DOC)


class QueuePatch(BaseModel):
    """Only the fields given change; null clears an optional one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"ack_deadline_seconds": 60, "dead_queue_id": None}]},
    )

    topic_id: ResourceId | None = None
    # May be changed, not cleared: null is refused, so the schema does not offer it.
    ack_deadline_seconds: AckDeadline | SkipJsonSchema[None] = None
    message_retention_seconds: Retention | SkipJsonSchema[None] = None
    message_max_deliveries: MaxDeliveries | None = None
    dead_queue_id: ResourceId | None = None
    message_filters: MessageFilters | None = Field(None, description=_FILTERS_DOC)

    @field_validator("ack_deadline_seconds", "message_retention_seconds")
    @classmethod
    def _not_null(cls, value: int | None) -> int:
        if value is None:
            raise ValueError("may be changed, not cleared")
        return value


class QueueResource(BaseModel):
    id: str
    topic_id: str | None
    ack_deadline_seconds: int
    message_retention_seconds: int
    message_max_deliveries: int | None
    dead_queue_id: str | None
    message_filters: dict[str, list[str]]
    created_at: datetime
    updated_at: datetime


class QueueStats(QueueOut):
    """What GET /queues reports for this queue, and the message counts."""

    id: str
    num_undelivered_messages: int = Field(description="Waiting: ready or scheduled.")
    num_leased_messages: int = Field(description="Held by a consumer or a worker now.")
    oldest_unacked_message_age_seconds: float | None = Field(
        description="Since the oldest message not yet acked was published; null when none."
    )
    num_dead_messages: int = Field(
        description="Messages that left it after message_max_deliveries and wait in its"
        " dead queue, or ended failed in it; what a redrive would bring back."
    )
