"""Whatever arrives in Authorization and X-API-Key, the answer is never a 500."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auth.tests.conftest import Keys

PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
LATIN_1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
HEX = st.sampled_from("0123456789abcdefABCDEF_")
URLSAFE = st.sampled_from("ABCxyz0189-_=+/.~ ")

SCHEMES = st.sampled_from(["Bearer ", "bearer ", "BEARER ", "Basic ", "Token ", "", "Bearer  "])
TOKENISH = st.builds(
    lambda prefix, key_id, secret: f"{prefix}_{key_id}_{secret}",
    st.sampled_from(["tl", "TL", "t", "", "tl_tl"]),
    st.text(HEX, max_size=24),
    st.text(URLSAFE, max_size=70),
)
JUNK = st.one_of(st.text(PRINTABLE, max_size=300), st.text(LATIN_1, max_size=80), TOKENISH)
# The real key, bent out of shape (or not).
BENDS = {
    "as is": lambda token: token,
    "short": lambda token: token[:-1],
    "long": lambda token: token + "x",
    "upper": lambda token: token.upper(),
    "dashes": lambda token: token.replace("_", "-"),
    "other id": lambda token: "tl_0123456789abcdef_" + token.split("_", 2)[2],
}
VALUES = st.one_of(JUNK, st.sampled_from(sorted(BENDS)).map(lambda bend: ("bend", bend)))
ROUTES = st.sampled_from(
    [("GET", "/tasks"), ("POST", "/tasks"), ("GET", "/tasks/0193a4c2-0000-7000-8000-000000000000"),
     ("GET", "/queues"), ("GET", "/keys"), ("DELETE", "/keys/0123456789abcdef")]
)  # fmt: skip
WHERE = st.sampled_from(["authorization", "x-api-key", "both"])

_token: dict[int, str] = {}


async def real_token(keys: Keys) -> str:
    """One key per test (the fixtures live across hypothesis' examples)."""
    if id(keys) not in _token:
        _token[id(keys)] = await keys.token("a", "tasks:read", "tasks:write")
    return _token[id(keys)]


def shaped(value: str | tuple[str, str], token: str) -> bytes:
    text = BENDS[value[1]](token) if isinstance(value, tuple) else value
    return text.encode("latin-1")


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(route=ROUTES, where=WHERE, scheme=SCHEMES, value=VALUES, second=VALUES)
async def test_no_auth_header_makes_a_500(
    client: httpx.AsyncClient, keys: Keys, route: tuple[str, str], where: str, scheme: str,
    value: str | tuple[str, str], second: str | tuple[str, str],
) -> None:  # fmt: skip
    token = await real_token(keys)
    sent: dict[str, bytes] = {}
    if where in ("authorization", "both"):
        sent["Authorization"] = scheme.encode() + shaped(value, token)
    if where in ("x-api-key", "both"):
        sent["X-API-Key"] = shaped(second if where == "both" else value, token)
    method, path = route
    body = {"message": "fuzz"} if method == "POST" else None
    answer = await client.request(method, path, json=body, headers=sent)
    assert answer.status_code in (200, 201, 401, 403, 404, 422), answer.text
    if answer.status_code >= 400:
        assert "detail" in answer.json()
