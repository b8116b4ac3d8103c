"""Answers that are not a success become the matching exception, with the status,
the JSON body and Retry-After."""

from __future__ import annotations

import httpx

from taskline.client import (
    Conflict,
    Invalid,
    NotFound,
    RateLimited,
    Refused,
    ServerError,
    TasklineError,
    Unavailable,
)
from taskline.client.errors import error_from


def test_each_status_has_its_exception() -> None:
    expected = {404: NotFound, 409: Conflict, 422: Invalid, 429: RateLimited, 503: Unavailable}
    for status, kind in expected.items():
        error = error_from(httpx.Response(status, json={"detail": "why"}))
        assert type(error) is kind and error.status == status
        assert error.body == {"detail": "why"} and error.detail == "why"
    assert type(error_from(httpx.Response(413, json={"detail": "big"}))) is Refused
    assert type(error_from(httpx.Response(500, text="oops"))) is ServerError
    assert issubclass(Unavailable, ServerError) and issubclass(RateLimited, Refused)
    assert issubclass(Refused, TasklineError) and issubclass(ServerError, TasklineError)


def test_retry_after_and_the_detail_in_either_shape() -> None:
    limited = error_from(httpx.Response(429, json={"detail": "slow"}, headers={"Retry-After": "3"}))
    assert limited.retry_after_s == 3.0 and str(limited) == "429 slow"
    listed = {"detail": [{"loc": ["body", "priority"], "msg": "too big", "type": "x"}]}
    assert error_from(httpx.Response(422, json=listed)).detail == "priority: too big"
    no_json = error_from(httpx.Response(502, text="<html>bad gateway</html>"))
    assert no_json.body is None and no_json.detail == "Bad Gateway"
    dated = httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert error_from(dated).retry_after_s is None
