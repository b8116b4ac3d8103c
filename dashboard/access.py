"""Who may see the dashboard: an admin key, in a header or through the sign-in
cookie (auth/session.py); a browser with neither is sent to the sign-in page."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.security import SecurityScopes

from auth.caller import Caller
from auth.dependencies import Credentials, presented
from auth.exceptions import InvalidKey, InvalidSession, MissingKey, SignInRequired

LOGIN_PATH = "/dashboard/login"
HOME_PATH = "/dashboard"
MAX_NEXT_CHARS = 2000


class PageCredentials(Credentials):
    """`require_page`: as `require`; but a browser opening a page (a GET that
    accepts HTML) with no key in a header and no valid sign-in gets a 303 to the
    sign-in page, which sends it back here after. Scripts (no text/html in
    Accept) still get 401."""

    async def __call__(self, security_scopes: SecurityScopes, request: Request) -> Caller:
        try:
            return await super().__call__(security_scopes, request)
        except (MissingKey, InvalidKey, InvalidSession) as refused:
            if (await presented(request)).token is not None or not _opens_a_page(request):
                raise
            raise SignInRequired(login_location(request)) from refused


require_page = PageCredentials()


def _opens_a_page(request: Request) -> bool:
    return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", "")


def login_location(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{LOGIN_PATH}?next={quote(here, safe='')}"


def after_login(next_path: str | None) -> str:
    """Where to go once signed in: a dashboard path only, never another site
    (`//host`, `/\\host`, a scheme) nor a header split by a line break."""
    if not next_path or len(next_path) > MAX_NEXT_CHARS:
        return HOME_PATH
    if any(ord(char) < 0x20 or char == "\\" for char in next_path):
        return HOME_PATH
    if next_path == HOME_PATH or next_path.startswith((HOME_PATH + "/", HOME_PATH + "?")):
        return next_path
    return HOME_PATH
