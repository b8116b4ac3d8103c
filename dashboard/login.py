"""The dashboard's sign-in with an admin key, for browsers (AUTH=keys).

GET /dashboard/login shows a form; POST /dashboard/login checks the key and
sets the session cookie (auth/session.py); POST /dashboard/logout clears it.
With AUTH=none there is nothing to sign in to: each sends the browser on to
the dashboard.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from app.error_bodies import error_responses
from auth import service, session
from auth.exceptions import AuthError, CrossSiteRequest
from auth.tokens import MAX_TOKEN_CHARS
from dashboard.access import HOME_PATH, LOGIN_PATH, MAX_NEXT_CHARS, after_login
from dashboard.router import STATIC, page

router = APIRouter(prefix="/dashboard", tags=["dashboard"])

FORM_TYPE = "application/x-www-form-urlencoded"
_FORM_FIELDS = 10


def _html(description: str) -> dict[str, Any]:
    return {"content": {"text/html": {"schema": {"type": "string"}}}, "description": description}


def _redirect(description: str) -> dict[str, Any]:
    return {"description": description, "headers": {"Location": {"schema": {"type": "string"}}}}


_FORM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            FORM_TYPE: {
                "schema": {
                    "type": "object",
                    "required": ["key"],
                    "properties": {
                        "key": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_TOKEN_CHARS,
                            "description": "An admin API key.",
                        },
                        "next": {
                            "type": "string",
                            "maxLength": MAX_NEXT_CHARS,
                            "description": "The dashboard page to go to once signed in.",
                        },
                    },
                }
            }
        },
    }
}


class FormError(Exception):
    """The sign-in form came without a key, or not as a form."""


@router.get(
    "/login",
    responses={
        200: _html("The sign-in form (AUTH=keys)."),
        303: _redirect("AUTH=none: nothing to sign in to, on to the dashboard."),
        **error_responses((422, "`next` is too long.")),
    },
    summary="Dashboard: sign-in form",
)
async def login_form(
    request: Request, next: Annotated[str | None, Query(max_length=MAX_NEXT_CHARS)] = None
) -> Response:
    if request.app.state.settings.auth == "none":
        return RedirectResponse(HOME_PATH, status_code=303)
    return page(request, "login.html", nav="login", next_path=after_login(next))


@router.post(
    "/login",
    status_code=303,
    response_class=RedirectResponse,
    openapi_extra=_FORM_BODY,
    responses={
        303: _redirect(
            "Signed in (the session cookie is set), on to `next`; AUTH=none: on to the dashboard."
        ),
        401: _html("The form again: the key is not valid (unknown, expired or revoked)."),
        403: {
            "content": {"text/html": {"schema": {"type": "string"}}, "application/json": {}},
            "description": "The form again (HTML): the key is not an admin key. Or, as JSON,"
            " a form posted by another site's page (its Origin or Referer says so).",
        },
        422: _html("The form again: no key, or not a form."),
        **error_responses(503),
    },
    summary="Dashboard: sign in with an admin key",
)
async def login(request: Request) -> Response:
    """Trades an admin key for a session cookie (HttpOnly, SameSite=Strict, Secure
    over https) that names the key and ends after 12 hours, or as soon as the key
    is revoked; the key itself is not kept in the browser."""
    _refuse_other_sites(request)
    try:
        form = await _read_form(request)
    except FormError as error:
        return _form_again(request, None, 422, str(error))
    next_path = after_login(form.get("next"))
    settings = request.app.state.settings
    if settings.auth == "none":
        return RedirectResponse(HOME_PATH, status_code=303)
    try:
        value = await service.open_session(
            keyring=request.app.state.keyring, settings=settings, token=form["key"]
        )
    except AuthError as refused:
        return _form_again(request, next_path, refused.status_code, refused.detail)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        session.COOKIE_NAME, value, max_age=session.SESSION_S, path="/",
        secure=request.url.scheme == "https", httponly=True, samesite="strict",
    )  # fmt: skip
    return response


@router.get(
    "/login/style.css",
    response_class=FileResponse,
    responses={200: {"content": {"text/css": {}}, "description": "The dashboard's stylesheet."}},
    summary="Dashboard: the sign-in form's stylesheet",
)
async def login_style() -> FileResponse:
    """The dashboard's stylesheet, for the sign-in form: open to anyone, since the
    files under /dashboard/static need an admin key like the pages."""
    return FileResponse(STATIC["dashboard.css"], headers={"Cache-Control": "public, max-age=300"})


@router.post(
    "/logout",
    status_code=303,
    response_class=RedirectResponse,
    responses={
        303: _redirect("Signed out (the cookie cleared), on to the sign-in form."),
        **error_responses((403, "Posted by another site's page (its Origin or Referer says so).")),
    },
    summary="Dashboard: sign out",
)
async def logout(request: Request) -> Response:
    """Clears the session cookie in this browser. A copy of the cookie taken
    elsewhere stays valid until it ends; revoking the key ends it at once."""
    _refuse_other_sites(request)
    signed_out = request.app.state.settings.auth == "none"
    response = RedirectResponse(HOME_PATH if signed_out else LOGIN_PATH, status_code=303)
    response.delete_cookie(
        session.COOKIE_NAME, path="/", secure=request.url.scheme == "https",
        httponly=True, samesite="strict",
    )  # fmt: skip
    return response


def _refuse_other_sites(request: Request) -> None:
    """A form posted here by another site's page (its Origin or Referer says so)."""
    origin = request.headers.get("origin")
    declared = (origin is not None and origin != "null") or "referer" in request.headers
    if declared and not session.made_here(request):
        raise CrossSiteRequest()


async def _read_form(request: Request) -> dict[str, str]:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != FORM_TYPE:
        raise FormError(f"the sign-in form is expected as {FORM_TYPE}")
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        fields = parse_qs(body, max_num_fields=_FORM_FIELDS)
    except ValueError as error:
        raise FormError("the sign-in form has too many fields") from error
    form = {name: values[0].strip() for name, values in fields.items()}
    if not form.get("key"):
        raise FormError("paste an admin API key")
    if len(form["key"]) > MAX_TOKEN_CHARS or len(form.get("next", "")) > MAX_NEXT_CHARS:
        raise FormError("the key or the page to go back to is too long")
    return form


def _form_again(request: Request, next_path: str | None, status: int, why: str) -> HTMLResponse:
    context = {"nav": "login", "next_path": next_path or HOME_PATH, "error": why}
    return page(request, "login.html", status_code=status, **context)
