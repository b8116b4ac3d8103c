"""All SQL of access control, as small keyword-only functions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth.models import ApiKey

# last_used_at is only moved when it is older than this: a busy key costs one
# small UPDATE a minute per API process, not one per request.
LAST_USED_STEP = text("interval '1 minute'")


async def insert_key(
    *,
    session: AsyncSession,
    key_id: str,
    owner: str,
    scopes: Sequence[str],
    secret_hash: str,
    expires_at: datetime | None,
) -> ApiKey:
    statement = (
        insert(ApiKey)
        .values(
            id=key_id,
            owner=owner,
            scopes=list(scopes),
            secret_hash=secret_hash,
            expires_at=expires_at,
        )
        .returning(ApiKey)
    )
    return (await session.scalars(statement)).one()


async def get_key(*, session: AsyncSession, key_id: str) -> ApiKey | None:
    statement = select(ApiKey).where(ApiKey.id == key_id).execution_options(populate_existing=True)
    return (await session.scalars(statement)).one_or_none()


async def list_keys(
    *, session: AsyncSession, owner: str | None, include_revoked: bool, limit: int
) -> Sequence[ApiKey]:
    """Newest first; revoked keys only when asked."""
    statement = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id).limit(limit)
    if owner is not None:
        statement = statement.where(ApiKey.owner == owner)
    if not include_revoked:
        statement = statement.where(ApiKey.revoked_at.is_(None))
    return (await session.scalars(statement)).all()


async def revoke_key(*, session: AsyncSession, key_id: str) -> ApiKey | None:
    """Revoked from now on; revoking again keeps the first time. None: no such key."""
    statement = (
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .values(revoked_at=func.coalesce(ApiKey.revoked_at, func.now()))
        .returning(ApiKey)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.scalars(statement)).one_or_none()


async def touch_keys(*, session: AsyncSession, key_ids: Sequence[str]) -> None:
    """Note that these keys were used; a no-op for those noted within the last minute."""
    statement = (
        update(ApiKey)
        .where(
            ApiKey.id.in_(list(key_ids)),
            or_(
                ApiKey.last_used_at.is_(None),
                ApiKey.last_used_at < func.now() - LAST_USED_STEP,
            ),
        )
        .values(last_used_at=func.now())
        .execution_options(synchronize_session=False)
    )
    await session.execute(statement)
