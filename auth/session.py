"""The dashboard's sign-in: a cookie holding a signed session, never the key.

A browser sends no Authorization header, so `POST /dashboard/login` trades an
admin key for a cookie whose value is `<key id>.<expires, Unix s>.<signature>`,
signed with HMAC-SHA256 under a key derived from AUTH_PEPPER. The value names
the key but holds nothing of its secret, so a copy of it cannot be turned back
into an API key. `require` checks it on every request: the signature, the
expiry, then the key itself through the KeyRing, so a revoked or expired key
stops its sessions as fast as it stops the key (within a second).

A cookie is sent by the browser whatever page made the request, so requests
that change something (any method but GET, HEAD, OPTIONS) must also show,
by their Origin (or else Referer) header, that a page of this host made them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import urlsplit

from starlette.requests import Request

from auth.tokens import KEY_ID_PATTERN

COOKIE_NAME = "taskline_session"
SESSION_S = 12 * 3600  # a browser signs in again after this
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PURPOSE = b"taskline dashboard session v1"
_KEY_ID = re.compile(KEY_ID_PATTERN)


def _signing_key(pepper: bytes) -> bytes:
    """Not the pepper itself: a session signature must not be a key hash, nor the reverse."""
    return hmac.new(pepper, _PURPOSE, hashlib.sha256).digest()


def _signature(pepper: bytes, key_id: str, expires_at_s: int) -> str:
    message = f"{key_id}.{expires_at_s}".encode()
    return hmac.new(_signing_key(pepper), message, hashlib.sha256).hexdigest()


def issue(pepper: bytes, key_id: str, *, now_s: float, lifetime_s: int = SESSION_S) -> str:
    """The cookie's value for a session of `key_id` that ends `lifetime_s` from now."""
    expires_at_s = int(now_s) + lifetime_s
    return f"{key_id}.{expires_at_s}.{_signature(pepper, key_id, expires_at_s)}"


def verify(pepper: bytes, value: str, *, now_s: float) -> str | None:
    """The key id a cookie value names, if we signed it and it has not expired."""
    parts = value.split(".")
    if len(value) > 200 or len(parts) != 3 or not parts[1].isdigit():
        return None
    key_id, expires_at, signature = parts
    if not _KEY_ID.fullmatch(key_id):
        return None
    expected = _signature(pepper, key_id, int(expires_at))
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    return key_id if int(expires_at) > now_s else None


def made_here(request: Request) -> bool:
    """Whether a page of this host sent the request: its Origin, or without one
    its Referer, names the host the request was sent to."""
    host = request.headers.get("host")
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        return host is not None and urlsplit(origin).netloc == host
    referer = request.headers.get("referer")
    return host is not None and referer is not None and urlsplit(referer).netloc == host
