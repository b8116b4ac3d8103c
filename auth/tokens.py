"""API key tokens: `tl_<id>_<secret>`. The id is public (it names the row); only a
keyed hash of the secret is stored, and checked in constant time.

Why HMAC-SHA256 with a server-side pepper and not a slow hash (scrypt, argon2):
the secret is 256 random bits, not a password, so no dictionary or brute force
can reach it and a slow hash would add nothing but CPU on every cache miss (a
way to load the API with made-up keys). The pepper (AUTH_PEPPER) lives only in
the servers' settings, so a copy of the database alone cannot check a guess.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "tl"
KEY_ID_PATTERN = r"^[0-9a-f]{16}$"
_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")
_KEY_ID = re.compile(KEY_ID_PATTERN)
MAX_TOKEN_CHARS = 200  # anything longer is refused before it is parsed


def new_key_id() -> str:
    return secrets.token_hex(8)


def new_secret() -> str:
    return secrets.token_urlsafe(32)  # 43 characters


def compose(key_id: str, secret: str) -> str:
    return f"{PREFIX}_{key_id}_{secret}"


def parse(token: str) -> tuple[str, str] | None:
    """(key id, secret), or None if `token` is not shaped like one of ours."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    if not _KEY_ID.fullmatch(parts[1]) or not _SECRET.fullmatch(parts[2]):
        return None
    return parts[1], parts[2]


def digest(pepper: bytes, key_id: str, secret: str) -> str:
    """The stored form: bound to the key id, so a hash copied onto another row fails."""
    return hmac.new(pepper, f"{key_id}:{secret}".encode(), hashlib.sha256).hexdigest()


def matches(pepper: bytes, key_id: str, secret: str, stored: str) -> bool:
    """Constant time whatever the inputs: no early exit on the first differing byte."""
    return hmac.compare_digest(digest(pepper, key_id, secret), stored)
