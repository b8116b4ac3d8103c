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
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPBearer, SecurityScopes
from fastapi.security.base import SecurityBase

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


@dataclass(frozen=True, slots=True)
class Presented:
    """What a request offers to prove who it is, read from its headers and cookie."""

    token: str | None  # an API key: `Authorization: Bearer` first, else X-API-Key
    bearer: str | None  # the bearer token alone (METRICS_TOKEN is only one)
    session_value: str | None


async def presented(request: Request) -> Presented:
    """Read by the schemes themselves, so each header is parsed as OpenAPI says."""
    bearer = await bearer_scheme(request)
    api_key = await api_key_scheme(request)
    token = bearer.credentials if bearer is not None else api_key
    bearer_token = bearer.credentials if bearer is not None else None
    return Presented(token, bearer_token, await session_scheme(request))


class Credentials(SecurityBase):
    """`require`: the caller, if it holds every scope asked for: 401 without a
    valid key (or dashboard session), 403 naming a missing scope. With AUTH=none
    everyone is an anonymous admin.

    One dependency that reads all three schemes, rather than one dependency per
    scheme: FastAPI solves each dependency of each request separately, and three
    fewer of them save a few percent of the API's CPU per request. FastAPI documents
    this dependency as the bearer scheme (it is a SecurityBase with its model);
    `document_credentials` adds the other two as alternatives."""

    def __init__(self) -> None:
        self.model = bearer_scheme.model
        self.scheme_name = bearer_scheme.scheme_name

    async def __call__(self, security_scopes: SecurityScopes, request: Request) -> Caller:
        caller = await self.caller(request)
        caller.check(security_scopes.scopes)
        return caller

    async def caller(self, request: Request) -> Caller:
        """Resolved once per request (kept on request.state), however many
        dependencies ask."""
        caller: Caller | None = getattr(request.state, "caller", None)
        if caller is None:
            caller = await _resolve(request)
            request.state.caller = caller
        return caller


require = Credentials()


async def _resolve(request: Request) -> Caller:
    """A key in a header first; else the dashboard's session cookie. With
    AUTH=none nothing is read: every request is the anonymous admin."""
    settings = request.app.state.settings
    if settings.auth == "none":
        return ANONYMOUS_ADMIN
    offered = await presented(request)
    keyring: KeyRing = request.app.state.keyring
    if offered.token is not None or offered.session_value is None:
        return await service.authenticate(keyring=keyring, settings=settings, token=offered.token)
    # A browser sends the cookie whichever site's page makes the request.
    if request.method not in session.SAFE_METHODS and not session.made_here(request):
        raise CrossSiteRequest()
    caller = await service.resume_session(
        keyring=keyring, settings=settings, value=offered.session_value
    )
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


class MetricsCredentials(Credentials):
    """`require_metrics`, for /metrics: METRICS_TOKEN as a bearer token (what a
    Prometheus scraper holds), else an admin key (or the dashboard's sign-in)."""

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        token = request.app.state.settings.metrics_token
        bearer = (await presented(request)).bearer
        if token is not None and bearer is not None:
            expected = token.get_secret_value().encode()
            if hmac.compare_digest(bearer.encode(), expected):
                return METRICS_CALLER
        caller = await self.caller(request)
        caller.check([Scope.ADMIN])
        return caller


require_metrics = MetricsCredentials()


def document_credentials(app: FastAPI) -> None:
    """`app.openapi` that lists the X-API-Key header and the dashboard's cookie
    beside the bearer scheme wherever `Credentials` is required, with the same
    scopes: a client may present any one of the three."""
    build = app.openapi
    others = (api_key_scheme, session_scheme)

    def openapi() -> dict[str, Any]:
        schema = build()
        schemes = schema.get("components", {}).get("securitySchemes")
        if schemes is None or bearer_scheme.scheme_name not in schemes:
            return schema
        for scheme in others:
            schemes[scheme.scheme_name] = jsonable_encoder(
                scheme.model, by_alias=True, exclude_none=True
            )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                _add_alternatives(operation.get("security", []), others)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_alternatives(security: list[dict[str, list[str]]], others: tuple[Any, ...]) -> None:
    """After each bearer requirement, the other schemes with its scopes (once)."""
    for requirement in list(security):
        scopes = requirement.get(bearer_scheme.scheme_name)
        if scopes is None:
            continue
        for scheme in others:
            if {scheme.scheme_name: scopes} not in security:
                security.append({scheme.scheme_name: scopes})
