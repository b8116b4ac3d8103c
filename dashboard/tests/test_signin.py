"""Signing in to the dashboard with an admin key (AUTH=keys), on real stores:
the redirect, the form, the cookie, sign-out, revocation and the CSRF check."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from app.config import Settings
from app.lifespan import close_resources, open_resources
from auth import service, session
from auth.tests.conftest import Keys, bearer, keys_settings
from tasks.tests.fixtures import Stores, app_client, wait_for

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser asks for
HERE = "http://test"  # the test client's origin


@dataclass
class Keyed:
    http: httpx.AsyncClient
    keys: Keys
    settings: Settings
    admin_id: str
    admin: str  # an admin key's token


@pytest.fixture
async def keyed(database_url: str, stores: Stores, namespace: str) -> AsyncIterator[Keyed]:
    """The API in process with AUTH=keys, and an admin key."""
    settings = keys_settings(database_url, stores, namespace)
    resources = open_resources(settings)
    try:
        keys = Keys(resources)
        admin_id, admin = await keys.make("ops", "admin")
        async with app_client(settings) as http:
            yield Keyed(http, keys, settings, admin_id, admin)
    finally:
        await close_resources(resources)


async def sign_in(
    http: httpx.AsyncClient, token: str, next_path: str = "/dashboard", **headers: str
) -> httpx.Response:
    answer = await http.post(
        "/dashboard/login", data={"key": token, "next": next_path}, headers=headers
    )
    http.cookies.clear()  # every request below names the cookie it sends, if any
    return answer


def cookie_of(answer: httpx.Response) -> dict[str, str]:
    """The session cookie set by a sign-in, as the header a browser sends back."""
    found = re.match(rf"{session.COOKIE_NAME}=([^;]+);", answer.headers["set-cookie"])
    assert found is not None, answer.headers["set-cookie"]
    return {"Cookie": f"{session.COOKIE_NAME}={found.group(1)}"}


async def test_a_browser_is_sent_to_sign_in_and_back_and_the_cookie_opens_the_api(
    keyed: Keyed,
) -> None:
    http = keyed.http
    page_path = "/dashboard/tasks?status=failed"
    sent = await http.get(page_path, headers=HTML)
    assert sent.status_code == 303
    assert (
        sent.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Ftasks%3Fstatus%3Dfailed"
    )
    assert (await http.get(page_path)).status_code == 401  # a script gets the JSON answer

    form = await http.get(sent.headers["location"], headers=HTML)
    assert form.status_code == 200 and form.headers["content-type"].startswith("text/html")
    assert 'name="key"' in form.text and 'value="/dashboard/tasks?status=failed"' in form.text
    assert "unsafe-inline" not in form.headers["content-security-policy"]
    assert "<script" not in form.text and " style=" not in form.text
    [style] = re.findall(r'<link rel="stylesheet" href="([^"]+)"', form.text)
    assert (await http.get(style)).status_code == 200  # before signing in, unlike /static

    signed_in = await sign_in(http, keyed.admin, "/dashboard/tasks?status=failed")
    assert signed_in.status_code == 303, signed_in.text
    assert signed_in.headers["location"] == "/dashboard/tasks?status=failed"
    set_cookie = signed_in.headers["set-cookie"]
    attributes = {part.strip().lower() for part in set_cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert "secure" not in attributes  # over http; see the https test
    assert keyed.admin.split("_", 2)[2] not in set_cookie  # the key's secret stays out of it
    cookie = cookie_of(signed_in)

    page = await http.get(page_path, headers={**HTML, **cookie})
    assert page.status_code == 200 and 'id="signout"' in page.text
    assert page.headers["referrer-policy"] == "same-origin"  # so its calls carry an Origin
    for path in ("/tasks", "/workers", "/metrics", "/dashboard/throughput"):
        assert (await http.get(path, headers=cookie)).status_code == 200, path


async def test_sign_in_refuses_a_bad_key_and_a_key_that_is_not_an_admins(keyed: Keyed) -> None:
    http = keyed.http
    reader = await keyed.keys.token("acme", "tasks:read", "queues:read")
    revoked = await keyed.keys.revoked("ops", "admin")
    wrong = "tl_" + keyed.admin_id + "_" + "x" * 43
    for token, status, why in [
        (wrong, 401, "not valid"),
        (revoked, 401, "not valid"),
        (reader, 403, "lacks the scope &#39;admin&#39;"),
        ("", 422, "paste an admin API key"),
    ]:
        answer = await sign_in(http, token)
        assert answer.status_code == status, (token, answer.text)
        assert "set-cookie" not in answer.headers
        assert why in answer.text and 'name="key"' in answer.text  # the form again
    not_a_form = await http.post("/dashboard/login", json={"key": keyed.admin})
    assert not_a_form.status_code == 422 and "set-cookie" not in not_a_form.headers


@pytest.mark.parametrize(
    "next_path", ["//evil.example/x", "https://evil.example", "/\\evil.example", "/tasks", ""]
)
async def test_after_sign_in_only_a_dashboard_page_is_a_destination(
    keyed: Keyed, next_path: str
) -> None:
    answer = await sign_in(keyed.http, keyed.admin, next_path)
    assert (answer.status_code, answer.headers["location"]) == (303, "/dashboard")


async def test_over_https_the_cookie_is_secure(keyed: Keyed) -> None:
    answer = await keyed.http.post(
        "https://test/dashboard/login", data={"key": keyed.admin, "next": "/dashboard"}
    )
    assert answer.status_code == 303
    assert "secure" in {part.strip().lower() for part in answer.headers["set-cookie"].split(";")}


async def test_with_the_cookie_only_pages_of_this_host_may_change_something(
    keyed: Keyed,
) -> None:
    http, admin = keyed.http, bearer(keyed.admin)
    cookie = cookie_of(await sign_in(http, keyed.admin))
    task = await http.post("/tasks", json={"message": "m", "delay_seconds": 600}, headers=admin)
    task_path = f"/tasks/{task.json()['id']}"
    cancel = {"status": "canceled"}
    for elsewhere in (
        {},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Referer": "http://evil.example/page"},
        {"Origin": "http://evil.example", "Referer": HERE + "/dashboard"},
    ):
        refused = await http.patch(task_path, json=cancel, headers={**cookie, **elsewhere})
        assert refused.status_code == 403, (elsewhere, refused.text)
        assert "Origin or Referer" in refused.json()["detail"]
    assert (await http.get(task_path, headers=cookie)).json()["status"] == "pending"

    canceled = await http.patch(task_path, json=cancel, headers={**cookie, "Origin": HERE})
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    referer = {**cookie, "Referer": HERE + "/dashboard" + task_path}
    retried = await http.post(task_path + "/retry", headers=referer)
    assert retried.status_code == 200 and retried.json()["status"] == "pending"
    # A key in a header is not sent by a browser on its own: no Origin needed.
    assert (await http.patch(task_path, json=cancel, headers=admin)).status_code == 200

    other_site = await sign_in(http, keyed.admin, Origin="http://evil.example")
    assert other_site.status_code == 403 and "set-cookie" not in other_site.headers


async def test_a_revoked_key_ends_its_sessions_within_a_second(keyed: Keyed) -> None:
    http = keyed.http
    cookie = cookie_of(await sign_in(http, keyed.admin))
    assert (await http.get("/dashboard", headers={**HTML, **cookie})).status_code == 200
    # As `taskline keys revoke` does from another process: the API hears it on Redis.
    await service.revoke_key(resources=keyed.keys.resources, key_id=keyed.admin_id)
    revoked_at = time.monotonic()

    async def refused() -> bool:
        return (await http.get("/tasks", headers=cookie)).status_code == 401

    # Within its cache's 10 s the key would still pass if the revoke went unheard.
    await wait_for(refused, timeout_s=5, what="the session to be refused")
    print(f"session refused {time.monotonic() - revoked_at:.3f}s after the revoke")
    page = await http.get("/dashboard", headers={**HTML, **cookie})
    assert page.status_code == 303 and page.headers["location"].startswith("/dashboard/login")
    answer = await http.get("/tasks", headers=cookie)
    assert "sign in again" in answer.json()["detail"]


async def test_a_forged_or_expired_session_is_refused(keyed: Keyed) -> None:
    http = keyed.http
    value = cookie_of(await sign_in(http, keyed.admin))["Cookie"].split("=", 1)[1]
    assert keyed.settings.auth_pepper is not None
    pepper = keyed.settings.auth_pepper.get_secret_value().encode()
    now_s = time.time()
    expired = session.issue(pepper, keyed.admin_id, now_s=now_s - session.SESSION_S - 1)
    for forged in (
        value[:-1] + ("0" if value[-1] != "0" else "1"),  # the signature altered
        session.issue(b"another pepper", keyed.admin_id, now_s=now_s),
        expired,
        keyed.admin,  # the key itself is not a session
        "",
    ):
        cookie = {"Cookie": f"{session.COOKIE_NAME}={forged}"}
        assert (await http.get("/tasks", headers=cookie)).status_code == 401, forged
        page = await http.get("/dashboard", headers={**HTML, **cookie})
        assert page.status_code == 303, forged


async def test_sign_out_clears_the_cookie(keyed: Keyed) -> None:
    http = keyed.http
    cookie = cookie_of(await sign_in(http, keyed.admin))
    out = await http.post("/dashboard/logout", headers={**cookie, "Origin": HERE})
    assert (out.status_code, out.headers["location"]) == (303, "/dashboard/login")
    cleared = out.headers["set-cookie"]
    assert cleared.startswith(f'{session.COOKIE_NAME}="";') and "Max-Age=0" in cleared
    assert "httponly" in cleared.lower() and "samesite=strict" in cleared.lower()
    other_site = await http.post("/dashboard/logout", headers={"Origin": "http://evil.example"})
    assert other_site.status_code == 403


async def test_with_auth_none_there_is_nothing_to_sign_in_to(client: httpx.AsyncClient) -> None:
    for answer in (
        await client.get("/dashboard/login", headers=HTML),
        await client.post("/dashboard/login", data={"key": "anything"}),
        await client.post("/dashboard/logout"),
    ):
        assert (answer.status_code, answer.headers["location"]) == (303, "/dashboard")
    assert (await client.get("/dashboard", headers=HTML)).status_code == 200
