"""Request and response bodies of publishing and consuming messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SkipValidation,
    StringConstraints,
    field_validator,
)

from tasks.schemas import (
    MAX_PAYLOAD_BYTES,
    NUMBER_ONLY,
    OWNER_PATTERN,
    JsonFloat,
    JsonInt,
    NulFreeJson,
    has_nul,
    json_size,
)
from topics.schemas import ATTRIBUTE_KEY, AttributeKey, AttributeValue

MAX_BATCH = 500
MAX_ATTRIBUTES = 100
MAX_LEASE = 100
MAX_WAIT_S = 20
MAX_VISIBILITY_S = 43200
MAX_RECEIPT_CHARS = 512

ReceiptHandle = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_RECEIPT_CHARS, pattern=r"^[A-Za-z0-9_-]+$"),
]
Visibility = Annotated[float, Field(gt=0, le=MAX_VISIBILITY_S), NUMBER_ONLY]


class MessageIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"data": {"order": 42, "total": 9.5}, "attributes": {"region": "eu"}}]
        },
    )

    data: SkipValidation[NulFreeJson] = Field(
        None, description="Any JSON, at most 256 KiB, without U+0000 in its strings."
    )
    attributes: Annotated[
        dict[AttributeKey, AttributeValue], Field(max_length=MAX_ATTRIBUTES), ATTRIBUTE_KEY
    ] = Field(default_factory=dict, description="String to string; queue filters match on them.")

    @field_validator("data")
    @classmethod
    def _data_size(cls, value: Any) -> Any:
        if has_nul(value):
            raise ValueError("data must not contain NUL characters")
        try:
            size = json_size(value)
        except ValueError:
            raise ValueError("data must not contain NaN or Infinity") from None
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"data is over {MAX_PAYLOAD_BYTES} bytes of JSON")
        return value


class MessageBatchIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"messages": [{"data": 1}, {"data": 2, "attributes": {"region": "us"}}]}]
        },
    )

    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_BATCH)


class PublishedMessage(BaseModel):
    id: uuid.UUID = Field(description="The message in this queue (a task id).")
    queue: str
    index: int = Field(description="Which message of the request it is (0 for a single one).")


class PublishOut(BaseModel):
    messages: list[PublishedMessage] = Field(
        description="One per matching queue and message; empty when no queue matched."
    )


class LeaseIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"max_messages": 10, "wait_seconds": 20, "consumer": "billing-1"}]
        },
    )

    max_messages: JsonInt = Field(1, ge=1, le=MAX_LEASE)
    wait_seconds: JsonFloat = Field(
        0, ge=0, le=MAX_WAIT_S, description="Wait this long for a message when none is ready."
    )
    visibility_seconds: Visibility | None = Field(
        None, description="Ack deadline of these deliveries; default: the queue's."
    )
    consumer: str = Field(
        "consumer",
        pattern=OWNER_PATTERN,
        max_length=64,
        description="A name for whoever leases, shown as the task's worker_id.",
    )


class LeasedMessage(BaseModel):
    id: uuid.UUID
    queue: str
    data: Any
    attributes: dict[str, str]
    receipt_handle: str = Field(description="Give it back to ack, nack or extend this delivery.")
    delivery_attempts: int = Field(description="1 on the first delivery.")
    lease_expires_at: datetime | None = Field(description="The ack deadline.")
    published_at: datetime


class LeaseOut(BaseModel):
    messages: list[LeasedMessage]


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    receipt_handle: ReceiptHandle


class NackIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"receipt_handle": "…", "delay_seconds": 5}]},
    )

    receipt_handle: ReceiptHandle
    delay_seconds: JsonFloat = Field(
        0, ge=0, le=MAX_VISIBILITY_S, description="Visible again after this long."
    )


class ExtendIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"receipt_handle": "…", "visibility_seconds": 60}]},
    )

    receipt_handle: ReceiptHandle
    visibility_seconds: Visibility = Field(description="The new deadline, from now.")


class ExtendOut(BaseModel):
    id: uuid.UUID
    lease_expires_at: datetime


class RedriveIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"max_messages": 100}]}
    )

    max_messages: JsonInt = Field(1000, ge=1, le=10_000)


class RedriveOut(BaseModel):
    redriven: int = Field(description="Messages sent back to the queue.")
