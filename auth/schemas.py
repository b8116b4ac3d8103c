"""Request and response bodies of key management."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from auth.caller import Scope

OWNER_PATTERN = r"^[\x21-\x7e]{1,200}$"  # the same rule as a task's owner
MAX_LIFETIME_S = 10 * 366 * 86400


class KeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"owner": "acme", "scopes": ["tasks:write", "tasks:read"]},
                {"owner": "ops", "scopes": ["admin"], "expires_in_seconds": 86400},
            ]
        },
    )

    owner: str = Field(pattern=OWNER_PATTERN, description="The tenant the key acts for.")
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))
    expires_at: AwareDatetime | None = Field(None, description="Refused from then on.")
    expires_in_seconds: float | None = Field(None, gt=0, le=MAX_LIFETIME_S)

    @model_validator(mode="after")
    def _one_expiry(self) -> KeyCreate:
        if self.expires_at is not None and self.expires_in_seconds is not None:
            raise ValueError("give expires_at or expires_in_seconds, not both")
        if self.expires_at is not None and self.expires_at <= datetime.now(UTC):
            raise ValueError("expires_at is in the past")
        return self

    def expiry(self) -> datetime | None:
        if self.expires_in_seconds is not None:
            return datetime.now(UTC) + timedelta(seconds=self.expires_in_seconds)
        return self.expires_at


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Public: the middle part of the key; use it to revoke.")
    owner: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="Kept to within a minute or so.")


class KeyCreated(KeyOut):
    key: str = Field(
        description="The key to send (Authorization: Bearer <key>). Shown this once: only a"
        " hash of it is stored.",
        examples=["tl_<id>_<secret>"],
    )


class KeyList(BaseModel):
    items: list[KeyOut]
