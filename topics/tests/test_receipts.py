"""Receipt handles: signed, one per delivery, and the same key in every API process."""

from __future__ import annotations

import base64
import uuid

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from app.config import Settings
from tasks.tests.fixtures import app_client
from topics.exceptions import MalformedReceipt, StaleReceipt
from topics.receipts import Delivery, ReceiptSigner
from topics.tests.conftest import create_queue, lease, put, settle

SECRET = "s" * 40


def test_a_handle_opens_to_its_delivery_and_only_for_its_message() -> None:
    signer = ReceiptSigner(b"k" * 32)
    delivery = Delivery(uuid.uuid4(), 3, "http:billing:0a1b2c3d4e5f")
    handle = signer.sign(delivery)
    assert signer.open(handle, delivery.message_id) == delivery
    with pytest.raises(StaleReceipt):
        signer.open(handle, uuid.uuid4())
    with pytest.raises(StaleReceipt):
        ReceiptSigner(b"x" * 32).open(handle, delivery.message_id)
    for malformed in ("", "!!!", handle[:10], base64.urlsafe_b64encode(b"\x02" * 60).decode()):
        with pytest.raises(MalformedReceipt):
            signer.open(malformed, delivery.message_id)


def _altered(handle: str) -> list[str]:
    """The handle with one character changed at a few places, cut short, or grown."""
    swapped = [
        handle[:i] + ("A" if handle[i] != "A" else "B") + handle[i + 1 :]
        for i in (0, 5, len(handle) // 2, len(handle) - 1)
    ]
    return [*swapped, handle[:-4], handle + "AAAA", handle.upper()]


async def test_altered_or_forged_handles_never_ack(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await create_queue(client, "work")
    await put(client, "work", 1, 2)
    [message, other] = await lease(client, "work", max_messages=2)
    # A handle with the right fields, signed with another key.
    raw = base64.urlsafe_b64decode(message["receipt_handle"] + "==")
    worker_id = raw[21:-16].decode()
    forged = ReceiptSigner(b"guess" * 8).sign(Delivery(uuid.UUID(message["id"]), 1, worker_id))

    for handle in [*_altered(message["receipt_handle"]), forged, other["receipt_handle"]]:
        response = await settle(client, {"id": message["id"], "receipt_handle": handle})
        assert response.status_code in (409, 422), (handle, response.text)
        assert response.json()["detail"]
        nack = await settle(client, {"id": message["id"], "receipt_handle": handle}, "nack")
        assert nack.status_code in (409, 422)
    status = await db.fetchval("SELECT status FROM tasks WHERE id = $1::uuid", message["id"])
    assert status == "processing"
    assert (await settle(client, message)).status_code == 204


async def test_a_handle_of_other_characters_is_invalid_and_one_never_handed_out_conflicts(
    client: httpx.AsyncClient,
) -> None:
    await create_queue(client, "work")
    await put(client, "work", 1)
    [message] = await lease(client, "work")
    # Not base64url at all: the body does not fit the schema.
    for handle in ("not a handle!", "a+b/c=="):
        response = await settle(client, {"id": message["id"], "receipt_handle": handle})
        assert response.status_code == 422, (handle, response.text)
    # Base64url, but no handle this API signed: like a forged one, it does not
    # hold the message.
    for handle in ("0", "AAAA", message["receipt_handle"][:30]):
        response = await settle(client, {"id": message["id"], "receipt_handle": handle})
        assert response.status_code == 409, (handle, response.text)
        assert "not a receipt handle this API hands out" in response.json()["detail"]
    assert (await settle(client, message)).status_code == 204


async def test_a_handle_from_before_a_redrive_does_not_hold_the_new_delivery(
    client: httpx.AsyncClient,
) -> None:
    await create_queue(client, "work", message_max_deliveries=1)
    await put(client, "work", 1)
    [before] = await lease(client, "work", consumer="same")
    assert (await settle(client, before, "nack")).status_code == 204  # failed: no deliveries left
    assert (await client.post("/queues/work/redrive")).json() == {"redriven": 1}
    [after] = await lease(client, "work", consumer="same")
    assert after["delivery_attempts"] == before["delivery_attempts"] == 1
    assert (await settle(client, before)).status_code == 409
    assert (await settle(client, after)).status_code == 204


async def test_an_unknown_message_is_404(client: httpx.AsyncClient) -> None:
    await create_queue(client, "work")
    await put(client, "work", 1)
    [message] = await lease(client, "work")
    assert (await client.delete("/queues/work")).status_code == 204
    gone = await settle(client, message)
    assert gone.status_code == 404 and gone.json()["detail"]
    bad_id = await client.post("/messages/not-a-uuid/ack", json={"receipt_handle": "x"})
    assert bad_id.status_code == 422


async def test_api_processes_without_a_secret_share_one_key_in_postgres(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with app_client(settings) as first, app_client(settings) as second:
        await create_queue(first, "work")
        await put(first, "work", 1, 2)
        [one, two] = await lease(first, "work", max_messages=2)
        assert (await settle(second, one)).status_code == 204
        assert (await settle(second, two, "extend", visibility_seconds=5)).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM receipt_keys") == 1


async def test_a_configured_secret_is_used_and_must_be_the_same_everywhere(
    settings: Settings, db: asyncpg.Connection
) -> None:
    same = settings.model_copy(update={"receipt_handle_secret": SecretStr(SECRET)})
    other = settings.model_copy(update={"receipt_handle_secret": SecretStr("o" * 40)})
    async with app_client(same) as first, app_client(same) as second, app_client(other) as third:
        await create_queue(first, "work")
        await put(first, "work", 1, 2)
        [one, two] = await lease(first, "work", max_messages=2)
        assert (await settle(third, one)).status_code == 409
        assert (await settle(second, one)).status_code == 204
        assert (await settle(first, two)).status_code == 204
    assert await db.fetchval("SELECT count(*) FROM receipt_keys") == 0
