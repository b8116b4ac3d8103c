"""Key management over HTTP, for admin keys: POST /keys, GET /keys, DELETE /keys/{id}.
(`taskline keys ...` does the same against the database, before any key exists.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Security, status

from app.error_bodies import error_responses
from app.lifespan import Resources
from auth import service
from auth.caller import Scope
from auth.dependencies import AUTH_RESPONSES, require
from auth.schemas import OWNER_PATTERN, KeyCreate, KeyCreated, KeyList, KeyOut
from auth.tokens import KEY_ID_PATTERN

router = APIRouter(
    prefix="/keys",
    tags=["keys"],
    dependencies=[Security(require, scopes=[Scope.ADMIN])],
    responses=AUTH_RESPONSES,
)


def _resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    responses=error_responses((409, "AUTH_PEPPER is not set."), 422, 503),
    summary="Create an API key",
)
async def create_key(body: KeyCreate, request: Request) -> KeyCreated:
    """The answer carries the key itself, this once: only a hash of it is stored."""
    row, token = await service.create_key(
        resources=_resources(request), owner=body.owner, scopes=body.scopes,
        expires_at=body.expiry(),
    )  # fmt: skip
    return KeyCreated.model_validate({**KeyOut.model_validate(row).model_dump(), "key": token})


@router.get("", response_model=KeyList, summary="List API keys")
async def list_keys(
    request: Request,
    owner: Annotated[str | None, Query(pattern=OWNER_PATTERN)] = None,
    include_revoked: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> KeyList:
    """Newest first, without secrets or hashes."""
    rows = await service.list_keys(
        resources=_resources(request), owner=owner, include_revoked=include_revoked, limit=limit
    )
    return KeyList(items=[KeyOut.model_validate(row) for row in rows])


@router.delete(
    "/{key_id}",
    response_model=KeyOut,
    responses=error_responses((404, "No such key."), 422, 503),
    summary="Revoke an API key",
)
async def revoke_key(
    request: Request, key_id: Annotated[str, Path(pattern=KEY_ID_PATTERN)]
) -> KeyOut:
    """Refused at once by this API process and within a second by the others.
    Revoking again answers the key as it is."""
    row = await service.revoke_key(
        resources=_resources(request), key_id=key_id, keyring=request.app.state.keyring
    )
    return KeyOut.model_validate(row)
