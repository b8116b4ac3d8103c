"""Receipt handles: an opaque, signed name for one delivery of one message.

A handle carries the message (task) id, the attempt number the delivery made
and the worker_id it was claimed under (which holds a random part per lease),
signed with HMAC-SHA256. Ack, nack and extend are conditional updates on all
three, so a handle of a delivery that is over matches nothing. The key is
RECEIPT_HANDLE_SECRET, or one made once and kept in PostgreSQL, so that every
API process accepts the handles of the others.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import uuid
from dataclasses import dataclass

from app.lifespan import Resources
from tasks import repository as tasks_repository
from topics import repository
from topics.exceptions import MalformedReceipt, StaleReceipt

VERSION = 1
MAC_BYTES = 16
_HEAD = struct.Struct(">B16sI")  # version, task id, attempt
_CONTEXT = b"taskline receipt handle\x00"


@dataclass(frozen=True, slots=True)
class Delivery:
    message_id: uuid.UUID
    attempt: int
    worker_id: str


class ReceiptSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, _CONTEXT + body, hashlib.sha256).digest()[:MAC_BYTES]

    def sign(self, delivery: Delivery) -> str:
        head = _HEAD.pack(VERSION, delivery.message_id.bytes, delivery.attempt)
        body = head + delivery.worker_id.encode()
        return base64.urlsafe_b64encode(body + self._mac(body)).rstrip(b"=").decode()

    def open(self, handle: str, message_id: uuid.UUID) -> Delivery:
        """The delivery a handle names; MalformedReceipt if it is not a handle at
        all, StaleReceipt if it is forged or names another message."""
        try:
            raw = base64.urlsafe_b64decode(handle + "=" * (-len(handle) % 4))
        except (binascii.Error, ValueError):
            raise MalformedReceipt() from None
        if len(raw) <= _HEAD.size + MAC_BYTES:
            raise MalformedReceipt()
        body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        version, task_bytes, attempt = _HEAD.unpack_from(body)
        if version != VERSION:
            raise MalformedReceipt()
        if not hmac.compare_digest(mac, self._mac(body)):
            raise StaleReceipt(message_id, "it was not signed by this service")
        try:
            worker_id = body[_HEAD.size :].decode()
        except UnicodeDecodeError:
            raise MalformedReceipt() from None
        if uuid.UUID(bytes=task_bytes) != message_id:
            raise StaleReceipt(message_id, "it is the handle of another message")
        return Delivery(message_id, attempt, worker_id)


class Receipts:
    """The signer of this process, its key read once (from settings or PostgreSQL)."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources
        self._signer: ReceiptSigner | None = None
        self._lock = asyncio.Lock()

    async def signer(self) -> ReceiptSigner:
        if self._signer is None:
            async with self._lock:
                if self._signer is None:
                    self._signer = ReceiptSigner(await self._key())
        return self._signer

    async def _key(self) -> bytes:
        configured = self._resources.settings.receipt_handle_secret
        if configured is not None:
            return configured.get_secret_value().encode()
        async with tasks_repository.driver_connection(self._resources.engine) as conn:
            return await repository.receipt_key(conn=conn, proposal=secrets.token_bytes(32))
