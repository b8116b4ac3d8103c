"""Tokens: their form, their keyed hash, and a comparison that does not short-circuit."""

from __future__ import annotations

import hmac
from typing import Any

import httpx
import pytest

from auth import tokens
from auth.tests.conftest import Keys, bearer


def test_a_token_carries_its_public_id_and_a_secret() -> None:
    key_id, secret = tokens.new_key_id(), tokens.new_secret()
    assert tokens.parse(tokens.compose(key_id, secret)) == (key_id, secret)
    assert tokens.new_secret() != secret and len(secret) == 43


@pytest.mark.parametrize(
    "token",
    ["", "tl", "tl__", "xx_0123456789abcdef_" + "a" * 43, "tl_0123456789ABCDEF_" + "a" * 43,
     "tl_0123456789abcdef_" + "a" * 42, "tl_0123456789abcdef_" + "a" * 43 + "!",
     "tl_0123456789abcdef_" + "a" * 300],
)  # fmt: skip
def test_anything_else_is_not_a_token(token: str) -> None:
    assert tokens.parse(token) is None


def test_the_hash_depends_on_the_pepper_and_the_key_id() -> None:
    secret = tokens.new_secret()
    stored = tokens.digest(b"p" * 32, "0123456789abcdef", secret)
    assert tokens.matches(b"p" * 32, "0123456789abcdef", secret, stored)
    assert not tokens.matches(b"q" * 32, "0123456789abcdef", secret, stored)
    assert not tokens.matches(b"p" * 32, "fedcba9876543210", secret, stored)
    assert secret not in stored


async def test_every_key_check_goes_through_hmac_compare_digest(
    client: httpx.AsyncClient, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = hmac.compare_digest
    calls: list[tuple[Any, Any]] = []

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    key_id, token = await keys.make("a", "tasks:read")
    assert (await client.get("/tasks", headers=bearer(token))).status_code == 200
    wrong = tokens.compose(key_id, tokens.new_secret())
    assert (await client.get("/tasks", headers=bearer(wrong))).status_code == 401
    assert len(calls) == 2
    assert [real(a, b) for a, b in calls] == [True, False]
