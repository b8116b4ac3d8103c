"""One HTTP exchange with a cap on the answer, on one client pool per process.

The pool (httpx, HTTP/1.1 keep-alive) is opened once per process: by the
worker for the `http` kind (a worker service, see gateway/kind.py) and by the
gateway for its pass-through paths. It never follows redirects (a 3xx goes
back to the caller as it is), ignores proxy variables of the environment, and
times connecting and reading separately.

What went wrong is told by `ExchangeFailed.reason`: `connect` (the request was
never sent: refused, unreachable, no free connection), `timeout` (sent, no
answer in time), `protocol` (the connection broke mid-answer), `too_large`
(the answer's body is over the cap). Only the first is surely harmless to retry.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from app.config import Settings
from gateway.headers import RawHeaders, end_to_end

MAX_CONNECTIONS = 100


def new_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=timeout_of(settings),
        limits=httpx.Limits(
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
        ),
        follow_redirects=False,
        trust_env=False,
        http1=True,
        http2=False,
    )


def timeout_of(settings: Settings, read_s: float | None = None) -> httpx.Timeout:
    connect_s = settings.gateway_connect_timeout_s
    read_s = read_s or settings.gateway_read_timeout_s
    return httpx.Timeout(connect=connect_s, read=read_s, write=read_s, pool=connect_s)


@dataclass(frozen=True, slots=True)
class Exchanged:
    status: int
    headers: RawHeaders  # end-to-end only
    body: bytes


class ExchangeFailed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def request(
    method: str,
    url: httpx.URL,
    headers: RawHeaders,
    content: bytes | None,
    timeout: httpx.Timeout,
) -> httpx.Request:
    """The request as given: no header of the client's own but Host and the length."""
    return httpx.Request(
        method,
        url,
        headers=headers,
        content=content or None,
        extensions={"timeout": timeout.as_dict()},
    )


async def exchange(
    client: httpx.AsyncClient, sent: httpx.Request, *, max_body_bytes: int
) -> Exchanged:
    """Send, then read the whole answer (at most `max_body_bytes` of body, as
    received: a compressed body stays compressed); ExchangeFailed otherwise."""
    where = f"{sent.url.scheme}://{sent.url.netloc.decode('ascii', 'replace')}"
    try:
        response = await client.send(sent, stream=True)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
        raise ExchangeFailed("connect", f"could not connect to {where}: {_text(error)}") from None
    except httpx.TimeoutException as error:
        raise ExchangeFailed("timeout", f"{where} did not answer in time: {_text(error)}") from None
    except httpx.HTTPError as error:
        raise ExchangeFailed("protocol", f"{where} broke the exchange: {_text(error)}") from None
    try:
        body = await _read_capped(response, max_body_bytes, where)
    except httpx.TimeoutException as error:
        raise ExchangeFailed("timeout", f"{where} stopped sending: {_text(error)}") from None
    except httpx.HTTPError as error:
        raise ExchangeFailed("protocol", f"{where} broke the exchange: {_text(error)}") from None
    finally:
        await response.aclose()
    return Exchanged(response.status_code, end_to_end(response.headers.raw), body)


async def _read_capped(response: httpx.Response, max_body_bytes: int, where: str) -> bytes:
    too_large = ExchangeFailed(
        "too_large",
        f"the answer of {where} has a body over GATEWAY_MAX_BODY_BYTES ({max_body_bytes} bytes)",
    )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body_bytes:
        raise too_large
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > max_body_bytes:
            raise too_large
    return bytes(body)


def _text(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
