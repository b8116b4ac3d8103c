"""Errors of access control; one handler (main.py) answers them as JSON."""

from __future__ import annotations


class AuthError(Exception):
    status_code = 401

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class MissingKey(AuthError):
    def __init__(self) -> None:
        super().__init__(
            "an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )


class InvalidKey(AuthError):
    """Unknown, malformed, expired or revoked: one answer, so it tells nothing."""

    def __init__(self) -> None:
        super().__init__(
            "the API key is not valid (unknown, expired or revoked)",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


class MissingScope(AuthError):
    status_code = 403

    def __init__(self, scope: str) -> None:
        self.scope = str(scope)  # a Scope prints as its value
        super().__init__(f"this API key lacks the scope {self.scope!r}")


class OwnerNotAllowed(AuthError):
    status_code = 403

    def __init__(self) -> None:
        super().__init__(
            "this API key acts for its own owner only; only an admin key may name another owner"
        )


class KeyNotFound(AuthError):
    status_code = 404

    def __init__(self, key_id: str) -> None:
        super().__init__(f"API key {key_id} not found")


class KeysNotConfigured(AuthError):
    status_code = 409

    def __init__(self) -> None:
        super().__init__("AUTH_PEPPER is not set, so API keys can be neither made nor checked")


class InvalidSession(AuthError):
    """The dashboard's sign-in cookie is forged, expired, or its key no longer valid."""

    def __init__(self) -> None:
        super().__init__(
            "the dashboard session is not valid (expired, or its key was revoked):"
            " sign in again at /dashboard/login, or send an API key",
            headers={"WWW-Authenticate": "Bearer"},
        )


class CrossSiteRequest(AuthError):
    status_code = 403

    def __init__(self) -> None:
        super().__init__(
            "a request that changes something with the dashboard's session cookie must come"
            " from a page of this host (its Origin or Referer header); send an API key instead"
        )


class SignInRequired(AuthError):
    """A browser without a key or session: sent to the sign-in page, not answered 401."""

    status_code = 303

    def __init__(self, location: str) -> None:
        super().__init__("sign in with an admin key first", headers={"Location": location})
