"""The one dependency every router uses to let a request in: `require`.

    from fastapi import Security
    from auth.caller import Scope
    from auth.dependencies import AUTH_RESPONSES, CallerDep, needs

    router = APIRouter(prefix="/things", responses=AUTH_RESPONSES)  # documents 401 and 403

    @router.get("", dependencies=needs(Scope.TASKS_READ))  # or [Security(require, scopes=[...])]
    async def list_things(caller: CallerDep) -> ...:
        ...  # hand caller.tenant to the repository: None means every owner (admin)

The caller is resolved once per request (cached on request.state) however many
times `require` appears; each appearance checks its own scopes.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import (
    APIKeyCookie,
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBearer,
    SecurityScopes,
)

from app.error_bodies import error_responses
from auth import service, session
from auth.caller import ANONYMOUS_ADMIN, Caller, Scope
from auth.exceptions import CrossSiteRequest
from auth.keyring import KeyRing

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="tl_<id>_<secret>",
    description="An API key (`taskline keys create`), as `Authorization: Bearer <key>`.",
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKey",
    description="The same API key, for tools that cannot set Authorization.",
)
session_scheme = APIKeyCookie(
    name=session.COOKIE_NAME,
    auto_error=False,
    scheme_name="dashboardSession",
    description="The dashboard's sign-in (`POST /dashboard/login` with an admin key):"
    " a signed session naming the key, checked like the key on every request. Requests"
    " that change something must come from a page of this host (Origin or Referer).",
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
ApiKeyDep = Annotated[str | None, Depends(api_key_scheme)]
SessionCookieDep = Annotated[str | None, Depends(session_scheme)]


async def require(
    security_scopes: SecurityScopes,
    request: Request,
    bearer: BearerDep,
    api_key: ApiKeyDep,
    session_value: SessionCookieDep,
) -> Caller:
    """The caller, if it holds every scope asked for: 401 without a valid key (or
    dashboard session), 403 naming a missing scope. With AUTH=none everyone is an
    anonymous admin."""
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is None:
        caller = await _resolve(request, bearer, api_key, session_value)
        request.state.caller = caller
    caller.check(security_scopes.scopes)
    return caller


async def _resolve(request: Request, bearer: HTTPAuthorizationCredentials | None,
                   api_key: str | None, session_value: str | None) -> Caller:  # fmt: skip
    """A key in a header first; else the dashboard's session cookie."""
    settings = request.app.state.settings
    if settings.auth == "none":
        return ANONYMOUS_ADMIN
    keyring: KeyRing = request.app.state.keyring
    token = bearer.credentials if bearer is not None else api_key
    if token is not None or session_value is None:
        return await service.authenticate(keyring=keyring, settings=settings, token=token)
    # A browser sends the cookie whichever site's page makes the request.
    if request.method not in session.SAFE_METHODS and not session.made_here(request):
        raise CrossSiteRequest()
    caller = await service.resume_session(keyring=keyring, settings=settings, value=session_value)
    request.state.signed_in = True
    return caller


CallerDep = Annotated[Caller, Security(require)]


def _auth_responses() -> dict[int | str, dict[str, Any]]:
    responses = error_responses(
        (401, "No API key, or one that is unknown, expired or revoked (`WWW-Authenticate`)."),
        (
            403,
            "The key lacks a scope this operation needs (its security requirement"
            " lists it), or names an owner not its own; `detail` says which.",
        ),
    )
    responses[401]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    return responses


AUTH_RESPONSES = _auth_responses()


def needs(*scopes: Scope) -> list[Any]:
    """`dependencies=needs(Scope.TASKS_READ)`: the route lets in callers holding
    every scope named (an admin key holds them all)."""
    return [Security(require, scopes=[str(scope) for scope in scopes])]


METRICS_CALLER = Caller(key_id=None, owner=None, scopes=frozenset({"metrics"}))


async def require_metrics(
    request: Request, bearer: BearerDep, api_key: ApiKeyDep, session_value: SessionCookieDep
) -> Caller:
    """For /metrics: METRICS_TOKEN as a bearer token (what a Prometheus scraper
    holds), else an admin key (or the dashboard's sign-in)."""
    token = request.app.state.settings.metrics_token
    if token is not None and bearer is not None:
        expected = token.get_secret_value().encode()
        if hmac.compare_digest(bearer.credentials.encode(), expected):
            return METRICS_CALLER
    return await require(SecurityScopes([Scope.ADMIN]), request, bearer, api_key, session_value)
