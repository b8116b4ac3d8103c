"""The typed Python client of the Taskline API, sync and async, on httpx.

    from taskline.client import Client

    with Client() as taskline:  # TASKLINE_URL, else http://127.0.0.1:8000
        task = taskline.create_task("resize", kind="echo", payload={"width": 640})
        made = taskline.create_tasks([{"message": f"resize {n}"} for n in range(1000)])
        done = taskline.wait(task.id, timeout_s=60)
        taskline.publish("orders", {"order": 42}, attributes={"region": "eu"})
        taskline.consume("eu-orders", print)  # ack each once handled; SIGTERM stops it

Answers are the API's own pydantic models (`tasks.schemas`,
`topics.message_schemas`); a refusal or an
unreachable server raises a `TasklineError` carrying the status and the body.
"""

from taskline.client.aio import AsyncClient
from taskline.client.calls import Call, ServerWait
from taskline.client.consuming import Consumed
from taskline.client.errors import (
    ConfigError,
    Conflict,
    Invalid,
    NotFound,
    RateLimited,
    Refused,
    ServerError,
    TasklineError,
    Unavailable,
    Unreachable,
    WaitTimedOut,
)
from taskline.client.sync import Client
from tasks.batch_schemas import BatchOut, BatchResult, TaskBatchItem
from tasks.schemas import QueueOut, TaskCreate, TaskOut, TaskPage, WorkerOut
from topics.message_schemas import ExtendOut, LeasedMessage, MessageIn, PublishOut

__all__ = [
    "AsyncClient",
    "BatchOut",
    "BatchResult",
    "Call",
    "Client",
    "ConfigError",
    "Conflict",
    "Consumed",
    "ExtendOut",
    "Invalid",
    "LeasedMessage",
    "MessageIn",
    "NotFound",
    "PublishOut",
    "QueueOut",
    "RateLimited",
    "Refused",
    "ServerError",
    "ServerWait",
    "TaskBatchItem",
    "TaskCreate",
    "TaskOut",
    "TaskPage",
    "TasklineError",
    "Unavailable",
    "Unreachable",
    "WaitTimedOut",
    "WorkerOut",
]
