"""Where the API is and how to talk to it: shared by `Client` and `AsyncClient`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict
from urllib.parse import urlsplit

import httpx

from taskline.client.calls import Call
from taskline.client.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:8000"
URL_VARIABLE = "TASKLINE_URL"
KEY_VARIABLE = "TASKLINE_API_KEY"
DEFAULT_TIMEOUT_S = 10.0
USER_AGENT = "taskline-client/0.1.0"
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,500}$")


class TaskFields(TypedDict, total=False):
    """The optional fields of a new task (see `tasks.schemas.TaskCreate`)."""

    kind: str
    payload: dict[str, Any]
    priority: int
    queue: str
    owner: str
    max_attempts: int
    timeout_seconds: float
    run_at: datetime
    delay_seconds: float
    expires_at: datetime
    ttl_seconds: float


@dataclass(frozen=True)
class Connection:
    base_url: str
    api_key: str | None
    timeout_s: float

    @classmethod
    def resolve(cls, base_url: str | None, api_key: str | None, timeout_s: float) -> Connection:
        """Arguments first, then TASKLINE_URL / TASKLINE_API_KEY, then the dev server."""
        url_from = "base_url" if base_url is not None else URL_VARIABLE
        url = base_url if base_url is not None else os.environ.get(URL_VARIABLE) or DEFAULT_URL
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{url_from} must be an http:// or https:// URL, got {url!r}")
        key_from = "api_key" if api_key is not None else KEY_VARIABLE
        key = api_key if api_key is not None else os.environ.get(KEY_VARIABLE) or None
        if key is not None and not _KEY_PATTERN.match(key):
            raise ConfigError(f"{key_from} must be 1..500 visible ASCII characters")
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s must be above 0, got {timeout_s}")
        return cls(url.rstrip("/"), key, timeout_s)

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for `httpx.Client` / `httpx.AsyncClient`."""
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return {"base_url": self.base_url, "headers": headers, "timeout": self.timeout_s}

    def request(self, http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
        timeout = httpx.Timeout(self.timeout_s, read=self.timeout_s + call.held_s)
        return http.build_request(
            call.method,
            call.path,
            params=call.params or None,
            json=call.json,
            headers=call.headers or None,
            timeout=timeout,
        )

    def unreachable(self, error: httpx.TransportError) -> str:
        reason = str(error) or type(error).__name__
        return f"cannot reach {self.base_url}: {reason}"
