"""What the gateway's own answers look like, for its OpenAPI."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field

from tasks.schemas import ErrorOut


class ForwardFailedOut(ErrorOut):
    task_id: uuid.UUID
    status: str = Field(description="failed or canceled")
    errors: list[dict[str, Any]] = Field(description="Every failed attempt's error.")


class ForwardPendingOut(ErrorOut):
    task_id: uuid.UUID
    status: str = Field(
        description="pending or expired: never sent; processing: sent, not answered yet."
    )


FORWARD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The target's answer, whatever its status: status, end-to-end"
        " headers and body as the target sent them.",
        "content": {"*/*": {}},
    },
    413: {"model": ErrorOut, "description": "Request body over GATEWAY_MAX_REQUEST_BYTES."},
    422: {"model": ErrorOut, "description": "The request cannot be queued as an http task."},
    429: {"model": ErrorOut, "description": "RATE_LIMIT reached; see Retry-After."},
    431: {"model": ErrorOut, "description": "Request headers over 16 KiB."},
    502: {
        "model": ForwardFailedOut,
        "description": "No answer to return: the target could not be reached after the"
        " retries, broke the exchange, or answered with a body over"
        " GATEWAY_MAX_BODY_BYTES. Passed-through paths answer without task_id.",
    },
    503: {
        "model": ErrorOut,
        "description": "QUEUE_MAX_PENDING or KIND_MAX_BACKLOG reached, or a store is"
        " down; see Retry-After.",
    },
    504: {
        "model": ForwardPendingOut,
        "description": "No answer within GATEWAY_WAIT_SECONDS (passed-through paths:"
        " GATEWAY_READ_TIMEOUT_SECONDS, without task_id).",
    },
}
