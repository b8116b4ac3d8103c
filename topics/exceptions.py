"""Domain errors of topics and HTTP consumers.

They are TaskErrors, so the one handler in main.py maps them to HTTP answers.
"""

from __future__ import annotations

import uuid

from tasks.exceptions import TaskError


class TopicError(TaskError):
    pass


class TopicNotFound(TopicError):
    status_code = 404

    def __init__(self, topic_id: str) -> None:
        super().__init__(f"topic {topic_id!r} not found")


class TopicExists(TopicError):
    status_code = 409

    def __init__(self, topic_id: str) -> None:
        super().__init__(f"topic {topic_id!r} already exists")


class TopicInUse(TopicError):
    status_code = 409

    def __init__(self, topic_id: str) -> None:
        super().__init__(
            f"topic {topic_id!r} has subscribed queues; delete or detach them,"
            " or pass ?force=true to detach them"
        )


class QueueNotFound(TopicError):
    status_code = 404

    def __init__(self, queue_id: str) -> None:
        super().__init__(f"queue {queue_id!r} not found")


class QueueExists(TopicError):
    status_code = 409

    def __init__(self, queue_id: str, *, deleting: bool = False) -> None:
        if deleting:
            super().__init__(
                f"queue {queue_id!r} is being deleted; DELETE it again to finish, then create it"
            )
        else:
            super().__init__(f"queue {queue_id!r} already exists")


class InvalidReference(TopicError):
    """The body names a topic or a dead queue that does not exist: 404, as for
    the topic or queue itself; the detail names the field."""

    status_code = 404


class OwnDeadQueue(TopicError):
    """A queue named as its own dead queue: its messages would never leave it."""

    status_code = 409

    def __init__(self) -> None:
        super().__init__("dead_queue_id: a queue cannot be its own dead queue")


class MessageNotFound(TopicError):
    status_code = 404

    def __init__(self, message_id: uuid.UUID) -> None:
        super().__init__(f"message {message_id} not found")


class MalformedReceipt(TopicError):
    """A handle that fits the schema (base64url) but that this API never handed
    out: like a forged one, it does not hold the message (409)."""

    status_code = 409

    def __init__(self) -> None:
        super().__init__("receipt_handle is not a receipt handle this API hands out")


class StaleReceipt(TopicError):
    """The handle is forged, of another message, or of a delivery that is over
    (acked, nacked, or past its deadline and delivered again)."""

    status_code = 409

    def __init__(self, message_id: uuid.UUID, why: str) -> None:
        super().__init__(f"receipt handle does not hold message {message_id}: {why}")
