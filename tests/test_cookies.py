"""Browser sessions: the session and the device token in HttpOnly cookies, never in the page.

Requests are made as a browser makes them (Origin, Sec-Fetch-*, the cookies it keeps), by
`Browser`, which keeps its own cookie jar and reads every attribute of every Set-Cookie.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http.cookies import Morsel, SimpleCookie
from ipaddress import ip_network
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import ENGINES, FIREFOX_UA, PASSWORD, ManualClock, bearer, login, on_engine
from tests.raw import raw_request
from tests.test_admin_api import ADMIN, ADMIN_TOKEN

MakeApi = Callable[..., Awaitable[TestClient]]
OWN = "http://127.0.0.1:8000"  # the API's own page: its address by default (Settings.origins)
SESSION, DEVICE = "__Host-sessionwire", "__Host-sessionwire-device"
LAN_HOST = "192.168.1.5:8000"  # plain http on a host browsers do not count as secure
SEVEN_DAYS = 7 * 24 * 3600


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


def cookies_set(resp: aiohttp.ClientResponse) -> dict[str, Morsel[str]]:
    """Every cookie the answer sets, by name, with its attributes."""
    found: dict[str, Morsel[str]] = {}
    for header in resp.headers.getall("Set-Cookie", []):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        found.update(jar)
    return found


@dataclass
class Browser:
    """One browser: it keeps the cookies it is given and sends them, with an `Origin` and
    the Fetch Metadata a page's fetch() has (change them per request to play others)."""

    client: TestClient
    origin: str | None = OWN
    host: str | None = None  # a Host header other than the test server's
    jar: dict[str, str] = field(default_factory=dict)
    last: dict[str, Morsel[str]] = field(default_factory=dict)

    async def send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str | None] | None = None,
        **kwargs: Any,
    ) -> aiohttp.ClientResponse:
        sent: dict[str, str | None] = {
            "User-Agent": FIREFOX_UA,
            "Origin": self.origin,
            "Sec-Fetch-Mode": "cors",
            "Sec-Fetch-Site": "same-origin",
            "Host": self.host,
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.jar.items()) or None,
            **(headers or {}),
        }
        resp = await self.client.request(
            method, path, headers={k: v for k, v in sent.items() if v is not None}, **kwargs
        )
        await resp.read()
        self.client.session.cookie_jar.clear()  # this Browser is the only jar
        self.last = cookies_set(resp)
        for name, morsel in self.last.items():
            if morsel["max-age"] == "0":
                self.jar.pop(name, None)
            else:
                self.jar[name] = morsel.value
        return resp

    async def sign_in(self, username: str = "alice", **fields: Any) -> dict[str, Any]:
        resp = await self.send(
            "POST", "/login", json={"username": username, "password": PASSWORD, **fields}
        )
        body = await resp.json()
        assert resp.status == 200, body
        return body  # type: ignore[no-any-return]

    async def get(self, path: str, status: int = 200) -> Any:
        resp = await self.send("GET", path)
        body = await resp.json(content_type=None)
        assert resp.status == status, body
        return body

    def tab(self) -> Browser:
        """Another tab of this browser: the same cookies, seen live."""
        return Browser(self.client, self.origin, self.host, self.jar)


def assert_session_cookie(morsel: Morsel[str], max_age: int) -> None:
    assert morsel.value.count(".") == 2  # the session's JWT, for the browser alone
    assert morsel["httponly"] and morsel["secure"]
    assert (morsel["path"], morsel["samesite"], morsel["domain"]) == ("/", "Lax", "")
    assert abs(int(morsel["max-age"]) - max_age) <= 2


async def test_a_browser_page_gets_the_session_in_a_cookie(api: TestClient) -> None:
    browser = Browser(api)
    body = await browser.sign_in(device_name="Laptop")
    assert "token" not in body and "device_token" not in body and "token_type" not in body
    assert body["session"]["device_name"] == "Laptop"
    assert set(browser.last) == {SESSION, DEVICE}
    assert_session_cookie(browser.last[SESSION], SEVEN_DAYS)
    device = browser.last[DEVICE]
    assert device["httponly"] and device["secure"] and device["samesite"] == "Strict"
    assert (device["path"], device["domain"]) == ("/", "")
    assert int(device["max-age"]) == 180 * 24 * 3600  # a device is known for months
    # The cookie is accepted wherever a bearer token is.
    me = await browser.get("/me")
    assert me["session"]["session_id"] == body["session"]["session_id"]
    assert (await browser.get("/activity"))["events"][0]["type"] == "session.created"
    verified = await browser.send("GET", "/auth/verify")
    assert verified.status == 200 and verified.headers["X-Auth-Request-User"] == "alice"
    # The browser's device id names the session: one browser, one device.
    assert body["session"]["device_id"]


@pytest.mark.parametrize(
    ("auth_cookie", "signals", "cookie_mode"),
    [
        ("auto", {"Sec-Fetch-Mode": "cors"}, True),
        ("auto", {"Sec-Fetch-Mode": "navigate"}, True),  # a form post
        ("auto", {"Sec-Fetch-Mode": None}, False),  # a program: curl, the terminal client
        ("auto", {"Sec-Fetch-Mode": None, "body": True}, True),  # a page on a LAN address
        ("auto", {"Sec-Fetch-Mode": "cors", "body": False}, False),  # a page asking for a token
        ("always", {"Sec-Fetch-Mode": None}, True),
        ("always", {"Sec-Fetch-Mode": "cors", "body": False}, True),
        ("never", {"Sec-Fetch-Mode": "cors", "body": True}, False),
    ],
)
async def test_when_a_sign_in_gets_a_cookie(
    make_api: MakeApi, auth_cookie: str, signals: dict[str, Any], cookie_mode: bool
) -> None:
    browser = Browser(await make_api(auth_cookie=auth_cookie))
    fields = {"cookie": signals["body"]} if "body" in signals else {}
    resp = await browser.send(
        "POST",
        "/login",
        json={"username": "alice", "password": PASSWORD, **fields},
        headers={"Sec-Fetch-Mode": signals["Sec-Fetch-Mode"]},
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert (SESSION in browser.last) is cookie_mode
    assert ("token" in body) is not cookie_mode
    assert ("device_token" in body) is not cookie_mode


async def test_a_form_sign_in_from_the_page_itself(api: TestClient) -> None:
    browser = Browser(api)
    resp = await browser.send(
        "POST",
        "/login",
        data={"username": "bob", "password": PASSWORD, "cookie": "true"},
        headers={"Sec-Fetch-Mode": "navigate"},
    )
    assert resp.status == 200 and SESSION in browser.last
    assert (await browser.get("/me"))["username"] == "bob"


async def test_tabs_of_one_browser_are_one_device(api: TestClient) -> None:
    first = Browser(api)
    await first.sign_in()
    second = first.tab()
    listed = [await tab.get("/sessions") for tab in (first, second)]
    for sessions in listed:
        (only,) = sessions["sessions"]
        assert only["current"] is True
    # Signing in again on this browser replaces its session: still one device.
    again = await second.sign_in()
    (only,) = (await first.get("/sessions"))["sessions"]
    assert only["session_id"] == again["session"]["session_id"] and only["current"]
    # Any other device is one more: a bearer client, say.
    await login(api)
    assert len((await first.get("/sessions"))["sessions"]) == 2


async def test_logout_clears_the_cookie_and_a_revoked_cookie_is_cleared(api: TestClient) -> None:
    browser = Browser(api)
    await browser.sign_in()
    old_cookie = dict(browser.jar)
    resp = await browser.send("POST", "/logout")
    assert resp.status == 200
    cleared = browser.last[SESSION]
    # A deletion carries what named the cookie (Secure, Path=/), or the browser keeps it.
    assert (cleared.value, cleared["max-age"], cleared["path"]) == ("", "0", "/")
    assert cleared["secure"] and cleared["httponly"]
    assert DEVICE in browser.jar  # the device stays known after sign-out
    # A tab that still sent the old cookie learns why, and the cookie is dropped.
    stale = Browser(api, jar=old_cookie)
    body = await stale.get("/me", 401)
    assert body["code"] == "session_revoked" and body["revoked"]["reason"] == "logout"
    assert stale.last[SESSION]["max-age"] == "0" and SESSION not in stale.jar
    # Without any cookie there is nothing to clear.
    assert (await stale.get("/me", 401))["code"] == "missing_token"
    assert stale.last == {}


@pytest.mark.parametrize("how", ["logout-all", "delete own", "revoke-others", "delete other"])
async def test_which_sign_outs_clear_the_cookie(api: TestClient, how: str) -> None:
    browser = Browser(api)
    mine = (await browser.sign_in())["session"]["session_id"]
    other = (await login(api))["session"]["session_id"]
    method, path = {
        "logout-all": ("POST", "/logout-all"),
        "delete own": ("DELETE", f"/sessions/{mine}"),
        "revoke-others": ("POST", "/sessions/revoke-others"),
        "delete other": ("DELETE", f"/sessions/{other}"),
    }[how]
    assert (await browser.send(method, path)).status == 200
    signed_out = how in ("logout-all", "delete own")
    assert (SESSION in browser.last) is signed_out
    assert (SESSION in browser.jar) is not signed_out


async def test_a_token_expired_cookie_is_cleared(make_api: MakeApi, clock: ManualClock) -> None:
    browser = Browser(await make_api(clock=clock, session_idle_timeout=10**6))
    await browser.sign_in()
    clock.advance(SEVEN_DAYS)
    assert (await browser.get("/me", 401))["code"] == "token_expired"
    assert SESSION not in browser.jar


async def test_a_bearer_token_wins_over_the_cookie(api: TestClient) -> None:
    browser = Browser(api)
    await browser.sign_in()
    token = (await login(api, "bob"))["token"]
    resp = await browser.send("GET", "/me", headers=bearer(token))  # type: ignore[arg-type]
    assert (await resp.json())["username"] == "bob"
    # A bad bearer is a 401 even with a good cookie, and the cookie is left alone.
    resp = await browser.send("GET", "/me", headers={"Authorization": "Bearer nope"})
    assert resp.status == 401 and browser.last == {}


async def test_a_sign_in_ends_the_session_the_browser_held(
    api: TestClient, watch_events: Callable[[str], Any]
) -> None:
    browser = Browser(api)
    alices = (await browser.sign_in())["session"]["session_id"]
    async with watch_events("alice") as events:
        await browser.sign_in("bob")  # alice's session is unreachable from here on
        (ended,) = await events.take()
    assert (ended["type"], ended["session_id"], ended["reason"]) == (
        "session.revoked",
        alices,
        "logout",
    )
    assert (await browser.get("/me"))["username"] == "bob"


async def test_the_device_cookie_keeps_each_user_of_the_browser_known(make_api: MakeApi) -> None:
    api = await make_api(login_max_failures=2)
    browser = Browser(api)
    alice_device = (await browser.sign_in())["session"]["device_id"]
    bob_device = (await browser.sign_in("bob"))["session"]["device_id"]
    assert alice_device != bob_device
    assert len(browser.jar[DEVICE].split("~")) == 2
    # A guesser elsewhere locks alice out; this browser is known, so its budget is its own.
    for _ in range(2):
        wrong = {"username": "alice", "password": "wrong"}
        assert (await api.post("/login", json=wrong)).status == 401
    assert (
        await api.post("/login", json={"username": "alice", "password": PASSWORD})
    ).status == 429
    again = await browser.sign_in()
    assert again["session"]["device_id"] == alice_device  # the same device, come back


async def test_plain_http_on_another_host_gets_an_unprefixed_cookie(
    make_api: MakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    page = f"http://{LAN_HOST}"
    api = await make_api(allowed_origins=(page,))
    lan = Browser(api, origin=page, host=LAN_HOST)
    caplog.set_level(logging.WARNING, "service.runtime.cookies")
    await lan.sign_in()
    assert set(lan.last) == {"sessionwire", "sessionwire-device"}
    morsel = lan.last["sessionwire"]
    assert morsel["httponly"] and not morsel["secure"] and morsel["samesite"] == "Lax"
    assert "without Secure" in caplog.text and LAN_HOST in caplog.text
    assert (await lan.get("/me"))["username"] == "alice"
    # The unprefixed name, which any host of the site could set, is read only there.
    at_loopback = Browser(api, origin=None, jar={"sessionwire": lan.jar["sessionwire"]})
    assert (await at_loopback.get("/me", 401))["code"] == "missing_token"
    tossed = Browser(api, origin=None, host=LAN_HOST, jar={SESSION: lan.jar["sessionwire"]})
    assert (await tossed.get("/me", 401))["code"] == "missing_token"


@pytest.mark.parametrize(
    ("overrides", "headers"),
    [
        ({"app_env": "production"}, {}),  # production is served over https, always
        ({"trusted_proxies": (ip_network("127.0.0.1/32"),)}, {"X-Forwarded-Proto": "https"}),
    ],
    ids=["production", "behind a TLS proxy"],
)
async def test_https_gets_the_host_cookie_whatever_the_host(
    make_api: MakeApi, overrides: dict[str, Any], headers: dict[str, str]
) -> None:
    page = f"https://{LAN_HOST}"
    api = await make_api(allowed_origins=(page,), **overrides)
    browser = Browser(api, origin=page, host=LAN_HOST)
    resp = await browser.send(
        "POST", "/login", json={"username": "alice", "password": PASSWORD}, headers=headers
    )
    assert resp.status == 200
    assert set(browser.last) == {SESSION, DEVICE} and browser.last[SESSION]["secure"]


async def test_an_untrusted_peer_cannot_claim_https(make_api: MakeApi) -> None:
    page = f"http://{LAN_HOST}"
    api = await make_api(allowed_origins=(page,))
    browser = Browser(api, origin=page, host=LAN_HOST)
    await browser.send(
        "POST",
        "/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert set(browser.last) == {"sessionwire", "sessionwire-device"}


async def test_the_admin_api_hands_a_cookie_when_asked(make_api: MakeApi) -> None:
    api = await make_api(admin_token=ADMIN_TOKEN)
    back_end = Browser(api, origin=None)
    body = {"username": "dave", "device_name": "Dave's laptop"}
    resp = await back_end.send("POST", "/admin/sessions", json=body, headers=ADMIN)  # type: ignore[arg-type]
    assert "token" in await resp.json() and back_end.last == {}
    resp = await back_end.send(
        "POST",
        "/admin/sessions",
        json={**body, "cookie": True},
        headers=ADMIN,  # type: ignore[arg-type]
    )
    answer = await resp.json()
    assert resp.status == 200 and "token" not in answer
    assert set(back_end.last) == {SESSION}  # a device token is for password sign-ins
    assert_session_cookie(back_end.last[SESSION], SEVEN_DAYS)
    assert (await back_end.get("/me"))["username"] == "dave"

    never = Browser(await make_api(admin_token=ADMIN_TOKEN, auth_cookie="never"), origin=None)
    resp = await never.send("POST", "/admin/sessions", json={**body, "cookie": True}, headers=ADMIN)  # type: ignore[arg-type]
    assert "token" in await resp.json() and never.last == {}


@pytest.mark.parametrize(
    ("cookie", "code"),
    [
        (b"__Host-sessionwire=ab\xffc", "invalid_token"),  # not UTF-8
        (b'__Host-sessionwire="quoted"; ;; =x; a', "invalid_token"),
        (b";;; =; __Host-sessionwire", "missing_token"),
    ],
)
async def test_a_strange_cookie_is_a_401(
    api: TestClient, caplog: pytest.LogCaptureFixture, cookie: bytes, code: str
) -> None:
    port = api.server.port
    assert port is not None
    resp = await raw_request(port, "GET", "/me", {"Cookie": cookie})
    assert (resp.status, resp.json()["code"]) == (401, code)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_strange_device_cookie_counts_as_none(api: TestClient) -> None:
    browser = Browser(api, jar={DEVICE: "a~~" + "x" * 3000 + "~not.a.token"})
    body = await browser.sign_in()
    assert body["session"]["device_id"]
    assert len(browser.jar[DEVICE].split("~")) == 1  # the garbage is not kept
