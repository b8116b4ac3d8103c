"""The `http` kind's payload and where it may go: deny by default."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.config import Settings
from gateway.payload import HttpPayload, destination


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def check(payload: dict[str, Any], found: Settings) -> HttpPayload:
    return HttpPayload.model_validate(payload, context={"settings": found})


def test_nothing_is_allowed_by_default() -> None:
    with pytest.raises(ValidationError, match="HTTP_ALLOWED_HOSTS"):
        check({"url": "https://example.com/x"}, settings())
    with pytest.raises(ValidationError, match="GATEWAY_TARGET_BASE_URL"):
        check({"path": "/x"}, settings())


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.example.com/x", True),
        ("https://API.Example.com./x", True),  # names compare without case or a final dot
        ("http://api.example.com:8080/x", True),  # a host alone: any port
        ("http://evil.example.com/x", False),
        ("http://api.example.com@evil.example.com/x", False),
        ("http://internal:9000/x", True),
        ("http://internal:9001/x", False),  # host:port: that port only
        ("http://internal/x", False),
        ("http://[::1]:7000/x", True),
        ("http://[::1]:7001/x", False),
        ("http://127.0.0.1:8000/x", True),  # the target's host and port
        ("http://127.0.0.1:5432/x", False),  # not any port of the target's host
        ("file:///etc/passwd", False),
        ("/relative", False),
    ],
)
def test_absolute_urls_go_only_to_allowed_hosts_and_the_target(url: str, allowed: bool) -> None:
    found = settings(
        http_allowed_hosts="api.example.com, internal:9000,[::1]:7000",
        gateway_target_base_url="http://127.0.0.1:8000/",
    )
    if allowed:
        assert destination(check({"url": url}, found), found).host
    else:
        with pytest.raises(ValidationError):
            check({"url": url}, found)


def test_a_path_goes_to_the_target_under_its_base_path() -> None:
    found = settings(gateway_target_base_url="http://127.0.0.1:8000/api")
    url = destination(check({"path": "//evil.example.com/x?a=%2F"}, found), found)
    assert (url.host, url.port, url.raw_path) == (
        "127.0.0.1",
        8000,
        b"/api//evil.example.com/x?a=%2F",
    )


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"path": "/a", "url": "http://x/"},
        {"path": "a"},
        {"path": "/a b"},
        {"path": "/a", "method": "GET /x HTTP/1.1"},
        {"path": "/a", "headers": [["bad name", "v"]]},
        {"path": "/a", "headers": [["x-a", "v\r\nx-injected: 1"]]},
        {"path": "/a", "headers": [["x-a", "x" * 17_000]]},
        {"path": "/a", "body": "x", "body_base64": "eA=="},
        {"path": "/a", "body_base64": "not base64!"},
        {"path": "/a", "timeout_seconds": 0},
        {"path": "/a", "extra": 1},
    ],
)
def test_malformed_payloads_are_refused(payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        check(payload, settings(gateway_target_base_url="http://127.0.0.1:8000"))


def test_headers_as_an_object_or_pairs_and_bodies_as_text_or_bytes() -> None:
    found = settings(gateway_target_base_url="http://127.0.0.1:8000")
    pairs = check({"path": "/a", "headers": [["x-a", "1"], ["x-a", "2"]], "body": "é"}, found)
    assert pairs.raw_headers() == [(b"x-a", b"1"), (b"x-a", b"2")]
    assert pairs.content() == "é".encode()
    mapping = check({"path": "/a", "headers": {"x-b": "3"}, "body_base64": "AAE="}, found)
    assert mapping.raw_headers() == [(b"x-b", b"3")] and mapping.content() == b"\x00\x01"
    assert check({"path": "/a"}, found).content() is None
