"""All SQL of topics and queues, as small keyword-only functions on an asyncpg
connection (`tasks.repository.driver_connection`). Messages are tasks: their
claim, outcome and recovery statements are the tasks' own."""

from topics.repository.messages import (
    extend_delivery,
    lock_queue,
    lock_topic_queues,
    message_exists,
    pending_of_other_kinds,
    receipt_key,
    redrive,
)
from topics.repository.resources import (
    delete_queue_messages,
    delete_queue_row,
    delete_topic,
    get_queue,
    get_topic,
    insert_queue,
    insert_topic,
    list_topics,
    mark_queue_deleting,
    update_queue,
)
from topics.repository.stats import (
    MAX_SUMMARIES,
    leasing_consumers,
    message_stats,
    message_summaries,
)

__all__ = [
    "MAX_SUMMARIES",
    "delete_queue_messages",
    "delete_queue_row",
    "delete_topic",
    "extend_delivery",
    "get_queue",
    "get_topic",
    "insert_queue",
    "insert_topic",
    "leasing_consumers",
    "list_topics",
    "lock_queue",
    "lock_topic_queues",
    "mark_queue_deleting",
    "message_exists",
    "message_stats",
    "message_summaries",
    "pending_of_other_kinds",
    "receipt_key",
    "redrive",
    "update_queue",
]
