"""auth/session.py: the signed session value, and telling this host's pages from others."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.requests import Request

from auth import session

PEPPER = b"p" * 32
KEY_ID = "0123456789abcdef"


def test_a_session_names_its_key_until_it_ends() -> None:
    value = session.issue(PEPPER, KEY_ID, now_s=1000.0, lifetime_s=60)
    assert value.startswith(f"{KEY_ID}.1060.")
    assert session.verify(PEPPER, value, now_s=1059.9) == KEY_ID
    assert session.verify(PEPPER, value, now_s=1060.0) is None  # ended
    assert session.verify(b"q" * 32, value, now_s=1000.0) is None  # another deployment's


@pytest.mark.parametrize(
    "edit",
    [
        lambda v: v.replace(KEY_ID, "fedcba9876543210"),  # another key, same signature
        lambda v: v.replace(".1060.", ".9999999999."),  # a later end
        lambda v: v[:-2],
        lambda v: v + ".x",
        lambda v: "",
        lambda v: "x" * 500,
        lambda v: v.replace(KEY_ID, "../../etc/passwd"),
    ],
)
def test_an_altered_session_is_refused(edit: Callable[[str], str]) -> None:
    value = session.issue(PEPPER, KEY_ID, now_s=1000.0, lifetime_s=60)
    assert session.verify(PEPPER, edit(value), now_s=1000.0) is None


def request(method: str, **headers: str) -> Request:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return Request({"type": "http", "method": method, "headers": raw, "path": "/"})


@pytest.mark.parametrize(
    ("headers", "made_here"),
    [
        ({"Host": "tl.example:8000", "Origin": "https://tl.example:8000"}, True),
        ({"Host": "tl.example:8000", "Referer": "https://tl.example:8000/dashboard"}, True),
        ({"Host": "tl.example", "Origin": "null", "Referer": "https://tl.example/x"}, True),
        ({"Host": "tl.example"}, False),  # neither header: unknown, refused
        ({"Host": "tl.example", "Origin": "null"}, False),
        ({"Host": "tl.example", "Origin": "https://tl.example.evil.example"}, False),
        (
            {
                "Host": "tl.example",
                "Origin": "https://evil.example",
                "Referer": "https://tl.example/",
            },
            False,
        ),
        ({"Host": "tl.example:8000", "Origin": "https://tl.example"}, False),  # another port
        ({"Origin": "https://tl.example"}, False),  # no Host to compare with
    ],
)
def test_made_here_compares_origin_or_else_referer_with_the_host(
    headers: dict[str, str], made_here: bool
) -> None:
    assert session.made_here(request("POST", **headers)) is made_here
