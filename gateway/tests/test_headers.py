"""Only end-to-end headers cross the gateway (RFC 9110 §7.6.1)."""

from __future__ import annotations

from gateway.headers import REQUEST_RECOMPUTED, end_to_end, from_json, to_json


def test_hop_by_hop_headers_and_those_connection_names_are_dropped() -> None:
    headers = [
        (b"Connection", b"keep-alive, X-Hop , x-other"),
        (b"X-Hop", b"1"),
        (b"x-other", b"2"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Transfer-Encoding", b"chunked"),
        (b"TE", b"trailers"),
        (b"Upgrade", b"h2c"),
        (b"Proxy-Authorization", b"Basic x"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"X-End", b"3"),
    ]
    assert end_to_end(headers) == [
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"X-End", b"3"),
    ]


def test_a_request_loses_its_host_and_length_for_the_next_hop() -> None:
    headers = [
        (b"host", b"gateway:8001"), (b"content-length", b"3"), (b"expect", b"100-continue"),
        (b"x-a", b"1"),
    ]  # fmt: skip
    assert end_to_end(headers, drop=REQUEST_RECOMPUTED) == [(b"x-a", b"1")]


def test_every_byte_survives_the_trip_through_json() -> None:
    headers = [(b"x-bytes", bytes(range(32, 256)))]
    assert from_json(to_json(headers)) == headers
