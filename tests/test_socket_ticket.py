"""A browser's socket: opened by its cookie from an allowed page, or by a one-time ticket.

The API and an in-process gateway share one Redis and one ManualClock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from service.settings import Settings
from tests.conftest import ENGINES, ManualClock, bearer, login, make_settings, on_engine
from tests.devices import Device, start_gateway
from tests.test_cookies import SESSION, Browser

MakeApi = Callable[..., Awaitable[TestClient]]
PAGE = "http://127.0.0.1:8000"
EVIL = "http://127.0.0.1:9000"  # same site, another origin


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return make_settings(redis_url, allowed_origins=(PAGE,))


@pytest.fixture
async def api(make_api: MakeApi, clock: ManualClock) -> TestClient:
    return await make_api(clock=clock, allowed_origins=(PAGE,))


@pytest.fixture
async def gateway(aiohttp_client: Any, settings: Settings, clock: ManualClock) -> Any:
    return await start_gateway(aiohttp_client, settings, clock=clock)


async def signed_in(api: TestClient) -> Browser:
    browser = Browser(api, origin=PAGE)
    await browser.sign_in()
    return browser


async def ticket_for(browser: Browser) -> str:
    resp = await browser.send("POST", "/socket-ticket")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["ticket"].startswith("swt_") and body["expires_at"].endswith("Z")
    return body["ticket"]  # type: ignore[no-any-return]


async def open_with(
    gateway: Any, *, ticket: str = "", origin: str | None = PAGE, cookie: str = ""
) -> Device:
    """A socket offering a ticket (or only our subprotocol), from `origin`, with `cookie`."""
    protocols = ("sessionwire.v1", f"bearer.{ticket}") if ticket else ("sessionwire.v1",)
    headers = {"Origin": origin} if origin else {}
    if cookie:
        headers["Cookie"] = f"{SESSION}={cookie}"
    return Device(await gateway.ws_connect("/ws", protocols=protocols, headers=headers))


async def refused(gateway: Any, status: int, **kwargs: Any) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as error:
        await open_with(gateway, **kwargs)
    assert error.value.status == status


async def test_a_ticket_opens_one_socket_once(api: TestClient, gateway: Any) -> None:
    browser = await signed_in(api)
    ticket = await ticket_for(browser)
    device = await open_with(gateway, ticket=ticket)
    ready = await device.ready()
    assert ready["username"] == "alice"
    assert ready["session_id"] == (await browser.get("/me"))["session"]["session_id"]
    await refused(gateway, 401, ticket=ticket)  # used
    await refused(gateway, 401, ticket="swt_" + "x" * 43)  # never issued
    await refused(gateway, 401, ticket="swt_é")  # no such bytes in a ticket
    # What the socket is for: the sign-out is heard on it.
    assert (await browser.send("POST", "/logout")).status == 200
    await device.revoked()


async def test_a_ticket_lives_30_seconds(api: TestClient, gateway: Any, clock: ManualClock) -> None:
    browser = await signed_in(api)
    early, late = await ticket_for(browser), await ticket_for(browser)
    clock.advance(29.999)
    await (await open_with(gateway, ticket=early)).ready()
    clock.advance(0.001)
    await refused(gateway, 401, ticket=late)


async def test_another_origin_gets_no_ticket_and_no_socket(api: TestClient, gateway: Any) -> None:
    browser = await signed_in(api)
    resp = await browser.send("POST", "/socket-ticket", headers={"Origin": EVIL})
    assert (resp.status, (await resp.json())["code"]) == (403, "csrf_refused")
    ticket = await ticket_for(browser)
    await refused(gateway, 403, ticket=ticket, origin=EVIL)
    await (await open_with(gateway, ticket=ticket)).ready()  # refused before it was taken


async def test_a_ticket_of_an_ended_session_says_why(api: TestClient, gateway: Any) -> None:
    browser = await signed_in(api)
    ticket = await ticket_for(browser)
    other = (await login(api))["token"]
    mine = (await browser.get("/me"))["session"]["session_id"]
    assert (await api.delete(f"/sessions/{mine}", headers=bearer(other))).status == 200
    notice = await (await open_with(gateway, ticket=ticket)).revoked()
    assert notice["reason"] == "revoked"


async def test_a_bearer_client_may_trade_its_token_too(api: TestClient, gateway: Any) -> None:
    token = (await login(api))["token"]
    resp = await api.post("/socket-ticket", headers=bearer(token))
    ticket = (await resp.json())["ticket"]
    await (await open_with(gateway, ticket=ticket, origin=None)).ready()


async def test_the_cookie_opens_a_socket_from_an_allowed_page_only(
    api: TestClient, gateway: Any
) -> None:
    browser = await signed_in(api)
    cookie = browser.jar[SESSION]
    await (await open_with(gateway, cookie=cookie)).ready()
    await refused(gateway, 403, origin=EVIL, cookie=cookie)
    # A cookie with no page at all (no Origin) opens nothing: only a page sends one.
    await refused(gateway, 403, origin=None, cookie=cookie)
    # The bearer subprotocol is what counts when both are sent.
    await refused(gateway, 401, ticket="swt_unknown", cookie=cookie)
    # The cookie of an ended session is told why, at once.
    assert (await browser.send("POST", "/logout")).status == 200
    notice = await (await open_with(gateway, cookie=cookie)).revoked()
    assert notice["reason"] == "logout"


@pytest.mark.parametrize(
    ("public_url", "host", "needs_ticket"),
    [
        ("", "127.0.0.1:8000", False),  # GATEWAY_PORT of the page's host: the cookie goes
        ("wss://auth.example.com/ws", "auth.example.com", False),  # through the same proxy
        ("wss://ws.example.com/ws", "auth.example.com", True),  # another host
    ],
)
async def test_config_says_when_a_ticket_is_needed(
    make_api: MakeApi, public_url: str, host: str, needs_ticket: bool
) -> None:
    api = await make_api(gateway_public_url=public_url)
    resp = await api.get("/config", headers={"Host": host})
    assert (await resp.json())["socket_ticket"] is needs_ticket
