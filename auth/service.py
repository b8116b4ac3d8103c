"""The rules of access control: who a token is, and making and revoking keys."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from app.config import Settings
from app.lifespan import Resources
from auth import repository, session, tokens
from auth.cache import CACHE_TTL_S, KeyRecord
from auth.caller import Caller, Scope
from auth.exceptions import (
    InvalidKey,
    InvalidSession,
    KeyNotFound,
    KeysNotConfigured,
    MissingKey,
    MissingScope,
)
from auth.keyring import KeyRing
from auth.models import ApiKey

log = logging.getLogger("taskline.auth")


def pepper(settings: Settings) -> bytes:
    if settings.auth_pepper is None:
        raise KeysNotConfigured()
    return settings.auth_pepper.get_secret_value().encode()


async def authenticate(*, keyring: KeyRing, settings: Settings, token: str | None) -> Caller:
    """The caller a token stands for; MissingKey or InvalidKey (both 401) if none."""
    if not token:
        raise MissingKey()
    parsed = tokens.parse(token)
    if parsed is None:
        raise InvalidKey()
    key_id, secret = parsed
    record = await keyring.lookup(key_id)
    if record is None or not tokens.matches(pepper(settings), key_id, secret, record.secret_hash):
        raise InvalidKey()
    if not _in_force(record):
        raise InvalidKey()
    keyring.note_use(key_id)
    return Caller(key_id=record.id, owner=record.owner, scopes=record.scopes)


def _in_force(record: KeyRecord) -> bool:
    if record.revoked_at is not None:
        return False
    return record.expires_at is None or record.expires_at > datetime.now(UTC)


async def open_session(*, keyring: KeyRing, settings: Settings, token: str | None) -> str:
    """The dashboard's session cookie value for an admin key: InvalidKey (401) for
    a key that is not valid, MissingScope (403) for one that is not an admin's."""
    caller = await authenticate(keyring=keyring, settings=settings, token=token)
    if not caller.is_admin or caller.key_id is None:
        raise MissingScope(Scope.ADMIN)
    return session.issue(pepper(settings), caller.key_id, now_s=time.time())


async def resume_session(*, keyring: KeyRing, settings: Settings, value: str) -> Caller:
    """The caller a session cookie stands for, checked as its key is checked on
    every request (revoked or expired: InvalidSession, 401)."""
    key_id = session.verify(pepper(settings), value, now_s=time.time())
    if key_id is None:
        raise InvalidSession()
    record = await keyring.lookup(key_id)
    if record is None or not _in_force(record) or Scope.ADMIN not in record.scopes:
        raise InvalidSession()
    keyring.note_use(key_id)
    return Caller(key_id=record.id, owner=record.owner, scopes=record.scopes)


async def create_key(
    *,
    resources: Resources,
    owner: str,
    scopes: Sequence[str],
    expires_at: datetime | None,
) -> tuple[ApiKey, str]:
    """A new key and its token, which is never stored and cannot be shown again."""
    key_pepper = pepper(resources.settings)
    key_id, secret = tokens.new_key_id(), tokens.new_secret()
    async with resources.sessionmaker() as session:
        row = await repository.insert_key(
            session=session,
            key_id=key_id,
            owner=owner,
            scopes=sorted(set(scopes)),
            secret_hash=tokens.digest(key_pepper, key_id, secret),
            expires_at=expires_at,
        )
    await announce(resources, key_id)  # an API process may hold "no such key" for this id
    return row, tokens.compose(key_id, secret)


async def revoke_key(
    *, resources: Resources, key_id: str, keyring: KeyRing | None = None
) -> ApiKey:
    """Refused from now on by every API process: this one (`keyring`) at once, the
    others as soon as they hear the announcement on Redis (within a second)."""
    async with resources.sessionmaker() as session:
        row = await repository.revoke_key(session=session, key_id=key_id)
    if row is None:
        raise KeyNotFound(key_id)
    if keyring is not None:
        keyring.cache.invalidate(key_id)
    await announce(resources, key_id)
    return row


async def list_keys(
    *, resources: Resources, owner: str | None, include_revoked: bool, limit: int
) -> Sequence[ApiKey]:
    async with resources.sessionmaker() as session:
        return await repository.list_keys(
            session=session, owner=owner, include_revoked=include_revoked, limit=limit
        )


async def announce(resources: Resources, key_id: str) -> None:
    """Tell every API process to drop its cached lookup of `key_id`."""
    try:
        await resources.redis.publish(resources.keys.keys_channel, key_id)
    except Exception as error:
        log.warning(
            "could not announce key %s on Redis (%s); API processes that still hear Redis"
            " drop their cached copy within %.0f s, the others within 1 s",
            key_id, error, CACHE_TTL_S,
        )  # fmt: skip
