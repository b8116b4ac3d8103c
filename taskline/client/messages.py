"""Arguments of the message methods, turned into the API's own bodies: shared by
`Client` and `AsyncClient`, checked here (pydantic's ValidationError) before
anything is sent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from taskline.client.calls import TaskId
from topics.message_schemas import LeasedMessage, MessageBatchIn, MessageIn

# A delivery to ack, nack or extend: the leased message itself, or its id with a
# `receipt_handle=` beside it.
Delivery = LeasedMessage | TaskId


def one_message(data: Any, attributes: Mapping[str, str] | None) -> MessageIn:
    return MessageIn(data=data, attributes=dict(attributes or {}))


def batch(messages: Iterable[MessageIn | Mapping[str, Any]]) -> MessageBatchIn:
    """`MessageIn`s or mappings `{"data": ..., "attributes": {...}}`, 1..500 of them."""
    return MessageBatchIn(
        messages=[
            item if isinstance(item, MessageIn) else MessageIn.model_validate(item)
            for item in messages
        ]
    )


def receipt(delivery: Delivery, receipt_handle: str | None) -> tuple[TaskId, str]:
    """(message id, receipt handle) of a delivery."""
    if isinstance(delivery, LeasedMessage):
        return delivery.id, receipt_handle or delivery.receipt_handle
    if receipt_handle is None:
        raise TypeError("receipt_handle is required with a message id")
    return delivery, receipt_handle
