"""The `http` kind's payload, and where a request may go.

Deny by default: a `path` goes to GATEWAY_TARGET_BASE_URL; an absolute `url`
only to a host named in HTTP_ALLOWED_HOSTS (`host` for any port, `host:port`
for one), or to the target's own host and port. The API checks this when the
task is created (its validators get the settings as context: 422, nothing
stored, nobody contacted), and the worker checks again before it sends.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Self

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict, JsonValue

from app.config import Settings, split_list
from gateway.headers import RawHeaders
from tasks.schemas import NUMBER_ONLY

NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"  # a method or header name (RFC 9110 §5.6.2)
MAX_HEADERS = 200
MAX_HEADER_BYTES = 16 * 1024
HEADER_VALUE_PATTERN = r"^[\x01-\x09\x0b\x0c\x0e-\xff]*$"  # latin-1, no CR, LF or NUL
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
ReadTimeout = Annotated[float, Field(gt=0, le=3600), NUMBER_ONLY]
HeaderName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
HeaderValue = Annotated[str, StringConstraints(pattern=HEADER_VALUE_PATTERN)]
# The rules between fields, for the OpenAPI document (_one_of_each checks them).
_ONE_TARGET: list[JsonValue] = [
    {"required": [name], "properties": {name: {"type": "string"}}} for name in ("path", "url")
]
_BOTH_BODIES: JsonDict = {
    "required": ["body", "body_base64"],
    "properties": {"body": {"type": "string"}, "body_base64": {"type": "string"}},
}


class HttpPayload(BaseModel):
    """One HTTP request: give `path` (to GATEWAY_TARGET_BASE_URL) or `url`."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"oneOf": _ONE_TARGET, "not": _BOTH_BODIES}
    )

    method: str = Field("GET", max_length=20, pattern=NAME_PATTERN)
    path: str | None = Field(
        None,
        max_length=8192,
        pattern=r"^/[\x21-\x7e]*$",
        description="Path and query string, sent to GATEWAY_TARGET_BASE_URL.",
    )
    url: str | None = Field(
        None, max_length=8192, description="An absolute URL on a host of HTTP_ALLOWED_HOSTS."
    )
    headers: list[tuple[HeaderName, HeaderValue]] = Field(
        default_factory=list,
        max_length=MAX_HEADERS,
        description="[name, value] pairs in order (an object is taken too); hop-by-hop"
        " headers are dropped.",
    )
    body: str | None = Field(None, description="Sent as UTF-8.")
    body_base64: str | None = Field(
        None, pattern=BASE64_PATTERN, description="Bytes to send, base64-encoded."
    )
    timeout_seconds: ReadTimeout | None = Field(
        None, description="Read timeout (default GATEWAY_READ_TIMEOUT_SECONDS)."
    )

    @field_validator("headers", mode="before")
    @classmethod
    def _object_as_pairs(cls, value: Any) -> Any:
        return list(value.items()) if isinstance(value, dict) else value

    @field_validator("headers")
    @classmethod
    def _header_form(cls, value: list[tuple[str, str]]) -> list[tuple[str, str]]:
        total = 0
        for name, text in value:
            if not re.fullmatch(NAME_PATTERN, name):
                raise ValueError(f"header name {name[:50]!r} is not a token")
            if any(c in "\r\n\0" or ord(c) > 0xFF for c in text):
                raise ValueError(f"header {name!r} has a line break, NUL or non-latin-1 character")
            total += len(name) + len(text) + 4
        if total > MAX_HEADER_BYTES:
            raise ValueError(f"headers are over {MAX_HEADER_BYTES} bytes")
        return value

    @model_validator(mode="after")
    def _one_of_each(self, info: ValidationInfo) -> Self:
        if (self.path is None) == (self.url is None):
            raise ValueError("give either path or url")
        if self.body is not None and self.body_base64 is not None:
            raise ValueError("give body or body_base64, not both")
        if self.body_base64 is not None:
            try:
                base64.b64decode(self.body_base64, validate=True)
            except binascii.Error:
                raise ValueError("body_base64 is not base64") from None
        settings = (info.context or {}).get("settings")
        if isinstance(settings, Settings):
            destination(self, settings)  # refused here: never stored, never sent
        return self

    def content(self) -> bytes | None:
        if self.body_base64 is not None:
            return base64.b64decode(self.body_base64)
        return None if self.body is None else self.body.encode()

    def raw_headers(self) -> RawHeaders:
        return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in self.headers]


def destination(payload: HttpPayload, settings: Settings) -> httpx.URL:
    """Where the request goes; ValueError (naming the setting) when it may not."""
    if payload.path is not None:
        if not settings.gateway_target_base_url:
            raise ValueError("a path needs GATEWAY_TARGET_BASE_URL; give an absolute url instead")
        return httpx.URL(settings.gateway_target_base_url + payload.path)
    try:
        url = httpx.URL(payload.url or "")
    except httpx.InvalidURL as error:
        raise ValueError(f"url is not a URL: {error}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("url must be an absolute http:// or https:// URL")
    if not is_allowed(url, settings):
        raise ValueError(
            f"host {url.host}:{port_of(url)} is not in HTTP_ALLOWED_HOSTS; it was not contacted"
        )
    return url


def port_of(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def is_allowed(url: httpx.URL, settings: Settings) -> bool:
    host, port = _host(url.host), port_of(url)
    if settings.gateway_target_base_url:
        target = httpx.URL(settings.gateway_target_base_url)
        if (_host(target.host), port_of(target)) == (host, port):
            return True
    return any(
        allowed == host and allowed_port in (None, port)
        for allowed, allowed_port in map(_entry, split_list(settings.http_allowed_hosts))
    )


def _entry(entry: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` (the form the setting's check allows)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = entry.partition(":")
    return _host(host), int(port) if port else None


def _host(name: str) -> str:
    return name.lower().rstrip(".")
