"""The `topics` and `queues` tables, and the key that signs receipt handles.

A message is not a table of its own: it is a row of `tasks` (kind `message`,
its queue the queue's id, `payload` = `{"data", "attributes"}`).
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from app.db import Base

MESSAGE_KIND = "message"

topics = Table(
    "topics",
    Base.metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

queues = Table(
    "queues",
    Base.metadata,
    Column("id", String(64), primary_key=True),
    # No ON DELETE: a topic with queues is deleted only after they are detached.
    Column("topic_id", String(64), ForeignKey("topics.id"), nullable=True),
    Column("ack_deadline_seconds", Integer, nullable=False, server_default="30"),
    Column("message_retention_seconds", Integer, nullable=False, server_default="604800"),
    # NULL: delivered up to 100 times (the tasks' max_attempts ceiling), then failed.
    Column("message_max_deliveries", SmallInteger, nullable=True),
    Column("dead_queue_id", String(64), ForeignKey("queues.id", ondelete="SET NULL")),
    Column("message_filters", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Set while DELETE /queues/{id} removes its messages: the queue is gone for the API.
    Column("deleting_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("ack_deadline_seconds BETWEEN 1 AND 43200", name="ack_deadline_range"),
    CheckConstraint("message_retention_seconds BETWEEN 1 AND 2678400", name="retention_range"),
    CheckConstraint("message_max_deliveries BETWEEN 1 AND 100", name="max_deliveries_range"),
    CheckConstraint("dead_queue_id <> id", name="dead_queue_not_itself"),
    Index("ix_queues_topic_id", "topic_id"),
)

# One row, made on first use when RECEIPT_HANDLE_SECRET is unset, so that every
# API process signs and checks receipt handles with the same key.
receipt_keys = Table(
    "receipt_keys",
    Base.metadata,
    Column("name", String(32), primary_key=True),
    Column("secret", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
