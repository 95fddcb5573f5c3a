"""CSRF: what a cookie-authenticated change needs to come from, and what bearers don't.

"Site" ignores ports, so the attacker that matters here is a page on another port of the
API's own host: its form posts and credentialed fetches carry the SameSite=Lax cookie.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import ENGINES, PASSWORD, bearer, login, on_engine
from tests.test_cookies import OWN, SESSION, Browser

MakeApi = Callable[..., Awaitable[TestClient]]
APP = "https://app.example"  # a front end of CORS_ORIGINS
SAME_SITE = "http://127.0.0.1:9000"  # another port of the API's own host: same site
EVIL = "https://evil.example"


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


@pytest.fixture
async def api(make_api: MakeApi) -> TestClient:
    return await make_api(cors_origins=(APP,))


def unsafe_requests(own: str, other: str) -> list[tuple[str, str]]:
    """Every change a signed-in browser can make (`own`: its session, `other`: another)."""
    return [
        ("POST", "/logout"),
        ("POST", "/logout-all"),
        ("POST", "/sessions/revoke-others"),
        ("DELETE", f"/sessions/{other}"),
        ("DELETE", f"/sessions/{own}"),
        ("PATCH", f"/sessions/{other}"),
        ("POST", "/socket-ticket"),
    ]


async def signed_in_with_another(api: TestClient) -> tuple[Browser, str, str]:
    browser = Browser(api)
    own = (await browser.sign_in())["session"]["session_id"]
    other = (await login(api))["session"]["session_id"]
    return browser, own, other


REFUSED = {
    "a foreign origin": {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
    "another port of this host": {"Origin": SAME_SITE, "Sec-Fetch-Site": "same-site"},
    "a sandboxed page": {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    "no Origin, no Fetch Metadata": {"Origin": None, "Sec-Fetch-Site": None},
    "no Origin, cross-site": {"Origin": None, "Sec-Fetch-Site": "cross-site"},
    "no Origin, same-site": {"Origin": None, "Sec-Fetch-Site": "same-site"},
    "no Origin, typed by the user": {"Origin": None, "Sec-Fetch-Site": "none"},
    "an origin one slash away": {"Origin": OWN + "/", "Sec-Fetch-Site": "same-origin"},
}
ALLOWED = {
    "the API's own page": {"Origin": OWN, "Sec-Fetch-Site": "same-origin"},
    "a CORS_ORIGINS page": {"Origin": APP, "Sec-Fetch-Site": "same-site"},
    "no Origin, same-origin": {"Origin": None, "Sec-Fetch-Site": "same-origin"},
}


@pytest.mark.parametrize("case", REFUSED)
async def test_a_cookie_change_from_elsewhere_is_refused(api: TestClient, case: str) -> None:
    browser, own, other = await signed_in_with_another(api)
    for method, path in unsafe_requests(own, other):
        resp = await browser.send(method, path, headers=REFUSED[case])
        body = await resp.json()
        assert (resp.status, body["code"]) == (403, "csrf_refused"), (method, path)
        assert "Set-Cookie" not in resp.headers
    # Nothing was signed out, nothing was handed out.
    sessions = (await browser.get("/sessions"))["sessions"]
    assert {s["session_id"] for s in sessions} == {own, other}


@pytest.mark.parametrize("case", ALLOWED)
async def test_a_cookie_change_from_an_allowed_page(api: TestClient, case: str) -> None:
    browser, _, other = await signed_in_with_another(api)
    body = {"device_name": "Renamed"}
    resp = await browser.send("PATCH", f"/sessions/{other}", headers=ALLOWED[case], json=body)
    assert (resp.status, (await resp.json())["device_name"]) == (200, "Renamed")
    resp = await browser.send("DELETE", f"/sessions/{other}", headers=ALLOWED[case])
    assert resp.status == 200, await resp.json()
    resp = await browser.send("POST", "/logout", headers=ALLOWED[case])
    assert resp.status == 200 and browser.last[SESSION]["max-age"] == "0"


async def test_reading_needs_no_origin(api: TestClient) -> None:
    browser, _, _ = await signed_in_with_another(api)
    for path in ("/me", "/sessions", "/activity", "/auth/verify"):
        resp = await browser.send("GET", path, headers=REFUSED["a foreign origin"])
        assert resp.status == 200, path  # and CORS keeps the answer from that page


@pytest.mark.parametrize("case", ["a foreign origin", "no Origin, no Fetch Metadata"])
async def test_bearer_requests_are_not_judged(api: TestClient, case: str) -> None:
    token = (await login(api))["token"]
    other = (await login(api))["session"]["session_id"]
    plain = Browser(api)
    for method, path in [("DELETE", f"/sessions/{other}"), ("POST", "/socket-ticket")]:
        resp = await plain.send(method, path, headers={**REFUSED[case], **bearer(token)})
        assert resp.status == 200, await resp.json()
    # Even beside a cookie: the bearer is what the request is authenticated by.
    browser, _, _ = await signed_in_with_another(api)
    resp = await browser.send("POST", "/logout", headers={**REFUSED[case], **bearer(token)})
    assert resp.status == 200
    assert (await browser.get("/me"))["username"] == "alice"  # the cookie's session lives


async def login_form(browser: Browser, headers: dict[str, str | None]) -> Any:
    form = {"username": "alice", "password": PASSWORD}
    return await browser.send("POST", "/login", data=form, headers=headers)


async def test_login_csrf_is_refused(make_api: MakeApi) -> None:
    api = await make_api(cors_origins=(APP,), login_max_failures=1)
    victim = Browser(api)
    cross_site = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    for headers in (cross_site, {**cross_site, "Origin": SAME_SITE}):
        resp = await login_form(victim, headers)
        assert (resp.status, (await resp.json())["code"]) == (403, "csrf_refused")
        assert victim.last == {} and victim.jar == {}
    # Refused before the password is looked at: no failure was counted (the limit is 1).
    resp = await login_form(victim, {"Sec-Fetch-Mode": "navigate"})
    assert resp.status == 200 and SESSION in victim.jar
    # A program that asks for a token sets no cookie, so it has nothing to forge.
    resp = await api.post("/login", json={"username": "bob", "password": PASSWORD})
    assert resp.status == 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"X-Original-Method": "POST", "Origin": EVIL}, 403),
        ({"X-Forwarded-Method": "DELETE", "Origin": None, "Sec-Fetch-Site": None}, 403),
        ({"X-Original-Method": "POST", "Origin": OWN}, 200),
        ({"X-Original-Method": "GET", "Origin": EVIL}, 200),
    ],
)
async def test_forward_auth_judges_the_proxied_method(
    api: TestClient, headers: dict[str, str | None], status: int
) -> None:
    """A product API behind the proxy on the API's host gets the cookie too; a change to it
    from another page must fail the check as the API's own changes do."""
    browser, _, _ = await signed_in_with_another(api)
    resp = await browser.send("GET", "/auth/verify", headers=headers)
    assert resp.status == status
