"""Which headers cross the gateway: end-to-end ones only (RFC 9110 §7.6.1).

Hop-by-hop headers (Connection, the headers Connection names, and the
connection-specific fields) describe one connection and are dropped on every
hop, both ways. Headers are kept as raw (name, value) byte pairs, in order, so
repeated fields (Set-Cookie) and their values arrive as they were sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

RawHeaders = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Set again for the next hop by whoever sends it: the target's own host, the length
# of the body as sent. And `Expect: 100-continue` was the caller's question to the
# gateway, answered already: the gateway holds the whole body before it forwards.
REQUEST_RECOMPUTED = frozenset({b"host", b"content-length", b"expect"})


def end_to_end(
    headers: Iterable[tuple[bytes, bytes]], *, drop: frozenset[bytes] = frozenset()
) -> RawHeaders:
    """The headers without the hop-by-hop ones (and without `drop`)."""
    pairs = list(headers)
    named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    return [
        (name, value)
        for name, value in pairs
        if (low := name.lower()) not in HOP_BY_HOP and low not in named and low not in drop
    ]


def to_json(headers: Sequence[tuple[bytes, bytes]]) -> list[list[str]]:
    """Header bytes as JSON strings (latin-1 maps every byte to one character)."""
    return [[name.decode("latin-1"), value.decode("latin-1")] for name, value in headers]


def from_json(headers: Iterable[Sequence[str]]) -> RawHeaders:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def size(headers: Iterable[tuple[bytes, bytes]]) -> int:
    return sum(len(name) + len(value) + 4 for name, value in headers)
