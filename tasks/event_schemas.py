"""What GET /events sends, for the OpenAPI document: one schema per SSE event.

The stream (tasks/sse.py) is `text/event-stream`. Before OpenAPI 3.2's
`itemSchema`, a `text/event-stream` schema is read as the schema of ONE event,
an object of the SSE fields (`event`, `data`, `id`, `retry`) with `data` a
string; `contentMediaType` + `contentSchema` say that `data` holds JSON and of
what shape. Two kinds of event come: a task's state change (no `event:` field,
so `message`, with an `id:` to resume from), and the control events that end
or interrupt a stream (`gap`, `dropped`, `unavailable`, `timeout`), whose data
is `{"detail": ...}`.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.error_bodies import ErrorBody
from tasks.events import EVENTS
from tasks.models import TaskStatus

# `<entry id>:<index>` as the stream hands it out (a client may send less back).
STREAM_EVENT_ID_PATTERN = r"^[0-9]{1,20}-[0-9]{1,20}:[0-9]{1,10}$"
CONTROL_EVENTS = {
    "gap": "Resumed from beyond what the stream still holds: older events were trimmed.",
    "dropped": "The stream ends: the client fell too far behind (EVENTS_SUBSCRIBER_QUEUE).",
    "unavailable": "The stream ends: Redis was lost, or the API is shutting down.",
    "timeout": "The stream ends: `max_seconds` ran out.",
}


class EventOut(BaseModel):
    """A task's state change: the `data:` of each `message` event."""

    id: str = Field(
        pattern=STREAM_EVENT_ID_PATTERN,
        description="The event's id, as in the `id:` field; send it back as Last-Event-ID.",
    )
    task_id: uuid.UUID
    event: Literal[EVENTS] = Field(description="What happened.")  # type: ignore[valid-type]
    status: TaskStatus = Field(description="The task's status after it.")
    queue: str
    kind: str
    owner: str | None
    attempt: int = Field(ge=0, description="The attempt it happened in (0 before the first).")
    at: float = Field(description="When it was announced, in Unix seconds.")


def _json_data(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": schema}


def _inline(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its definitions inlined (an SSE `data` field's
    `contentSchema` is read on its own, so it holds no `$ref`)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})
    for spec in schema.get("properties", {}).values():
        ref = spec.pop("$ref", None)
        if ref is not None:
            spec.update(definitions[ref.rsplit("/", 1)[-1]])
    return schema


STATE_CHANGE: dict[str, Any] = {
    "type": "object",
    "title": "Task event",
    "required": ["data", "id"],
    "properties": {
        "event": {"const": "message", "description": "No `event:` field: a message."},
        "id": {"type": "string", "pattern": STREAM_EVENT_ID_PATTERN},
        "data": _json_data(_inline(EventOut)),
    },
}
CONTROL: dict[str, Any] = {
    "type": "object",
    "title": "Control event",
    "required": ["event", "data"],
    "properties": {
        "event": {
            "enum": list(CONTROL_EVENTS),
            "description": " ".join(f"`{name}`: {why}" for name, why in CONTROL_EVENTS.items()),
        },
        "data": _json_data(_inline(ErrorBody)),
    },
}
STREAM_RESPONSE: dict[str, Any] = {
    "description": "Server-Sent Events, one per state change of a task that matches the"
    " filters: its `data:` is a JSON event object (id, task_id, event, status, queue, kind,"
    " owner, attempt, at) and its `id:` what to resume from. `: keep-alive` comments keep"
    " an idle stream open; a final `dropped`, `unavailable` or `timeout` event ends it, and"
    " a `gap` event says a resume starts later than asked. The schema is that of one event.",
    "content": {"text/event-stream": {"schema": {"oneOf": [STATE_CHANGE, CONTROL]}}},
}
