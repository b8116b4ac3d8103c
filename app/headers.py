"""Security headers on every answer, and a Content-Security-Policy on HTML pages.

JSON answers get `default-src 'none'`: they are data, never a document to run.
HTML pages get a policy without inline scripts. The one exception is the API
documentation (Swagger UI starts itself with an inline script and styles its
elements inline; ReDoc runs a worker from a blob): those pages render no input
of anyone's, so they get a policy that allows just that.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DATA_CSP = "default-src 'none'; frame-ancestors 'none'"
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'"
)
_DOCS_CDN = "https://cdn.jsdelivr.net"
DOCS_CSP = (
    f"default-src 'self'; script-src 'self' 'unsafe-inline' {_DOCS_CDN};"
    f" style-src 'self' 'unsafe-inline' {_DOCS_CDN} https://fonts.googleapis.com;"
    " font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https:;"
    " worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none';"
    " form-action 'self'; frame-ancestors 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})

ALWAYS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


class SecurityHeaders:
    """Adds the headers an answer does not set itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ALWAYS.items():
                    headers.setdefault(name, value)
                headers.setdefault("content-security-policy", policy_for(path, headers))
            await send(message)

        await self.app(scope, receive, send_with_headers)


def policy_for(path: str, headers: MutableHeaders) -> str:
    if not headers.get("content-type", "").startswith("text/html"):
        return DATA_CSP
    return DOCS_CSP if path in DOCS_PATHS else PAGE_CSP
