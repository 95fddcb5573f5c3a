"""Browser sessions in Chromium, against the real API, worker and Redis: the session in an
HttpOnly cookie no script reads, one browser one device across its tabs, a product's page
on another origin using the client library, and an attacker's page on another port of
the same host (same site, so the SameSite=Lax cookie rides along) kept out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, WebSocket, expect

from tests.browser.conftest import (
    PASSWORD,
    USER,
    OpenDevice,
    Stack,
    StaticSite,
    running_stack,
)
from tests.browser.test_activity import admin
from tests.browser.test_page import (
    FIREFOX_UBUNTU,
    IPHONE,
    LAPTOP,
    LIVE_WITHIN_MS,
    PHONE,
    STARTUP_MS,
    card,
    live_status,
    other_devices,
    sign_in,
    signed_in,
    signed_out_heading,
    this_device,
)
from tests.test_admin_api import ADMIN_TOKEN

# Everything a page's script can read that could hold a credential.
READABLE_STORAGE = """async () => ({
  cookie: document.cookie,
  localStorage: Object.entries(localStorage),
  sessionStorage: Object.entries(sessionStorage),
  indexedDB: (await indexedDB.databases()).map((db) => db.name),
  caches: await caches.keys(),
})"""
NOTHING = {"cookie": "", "localStorage": [], "sessionStorage": [], "indexedDB": [], "caches": []}


def gateway_url(stack: Stack) -> str:
    return f"ws://127.0.0.1:{stack.worker.port}/ws"


def test_no_token_in_any_storage_a_script_can_read(stack: Stack, open_device: OpenDevice) -> None:
    laptop = open_device(stack.url, FIREFOX_UBUNTU)
    sign_in(laptop)
    signed_in(laptop, LAPTOP)
    assert laptop.evaluate(READABLE_STORAGE) == NOTHING
    cookies = {c["name"]: c for c in laptop.context.cookies()}
    assert set(cookies) == {"__Host-sessionwire", "__Host-sessionwire-device"}
    for cookie in cookies.values():
        assert cookie["httpOnly"] and cookie["secure"], cookie
        assert (cookie["domain"], cookie["path"]) == ("127.0.0.1", "/")
    assert cookies["__Host-sessionwire"]["sameSite"] == "Lax"
    assert cookies["__Host-sessionwire-device"]["sameSite"] == "Strict"
    token = cookies["__Host-sessionwire"]["value"]
    assert token not in laptop.content() and token not in laptop.url
    # A reload keeps the browser signed in, by its cookie alone.
    laptop.reload()
    signed_in(laptop, LAPTOP)
    assert laptop.evaluate(READABLE_STORAGE) == NOTHING


def current_flags(page: Page) -> list[bool]:
    """`current` of each session, as this tab's own request sees it."""
    sessions = page.evaluate("fetch('/sessions').then((r) => r.json())")["sessions"]
    return [session["current"] for session in sessions]


def test_two_tabs_are_one_device_and_hear_a_sign_out_together(
    stack: Stack, open_device: OpenDevice
) -> None:
    first = open_device(stack.url, FIREFOX_UBUNTU)
    second = first.context.new_page()
    sockets: list[WebSocket] = []
    for tab in (first, second):
        tab.on("websocket", lambda socket: sockets.append(socket))
    second.goto(stack.url)
    expect(second.get_by_role("heading", name="Sign in")).to_be_visible()

    sign_in(first)
    for tab in (first, second):  # the other tab follows the sign-in by itself
        signed_in(tab, LAPTOP)
        expect(tab.get_by_text("No other device is signed in.")).to_be_visible()
        assert current_flags(tab) == [True]
    assert len(sockets) == 1  # the browser's one socket, kept by one tab for both

    phone = open_device(stack.url, IPHONE, phone=True)
    sign_in(phone)
    for tab in (first, second):
        expect(tab.get_by_text(f"New sign-in on {PHONE}")).to_be_visible(timeout=LIVE_WITHIN_MS)
    signed_in(phone, PHONE)
    expect(other_devices(phone).get_by_role("listitem")).to_have_count(1)  # one laptop

    card(phone, LAPTOP).get_by_role("button", name="Sign out").click()
    for tab in (first, second):
        expect(signed_out_heading(tab)).to_be_visible(timeout=LIVE_WITHIN_MS)
        expect(tab.get_by_text("Another of your devices signed this one out.")).to_be_visible()
        expect(tab.get_by_text(f"Signed out by {PHONE} (127.0.0.1)")).to_be_visible()

    # Signed in again in one tab; signed out of it there: the other tab says so, in words.
    first.get_by_role("button", name="Sign in again").click()
    sign_in(first)
    signed_in(second, LAPTOP)
    this_device(first).get_by_role("button", name="Sign out this device").click()
    expect(first.get_by_text("You signed out of this device.")).to_be_visible()
    expect(second.get_by_text("You signed out of this device in another tab.")).to_be_visible(
        timeout=LIVE_WITHIN_MS
    )
    # The tab that kept the socket has gone: the other one takes it over.
    first.close()
    second.get_by_role("button", name="Sign in again").click()
    sign_in(second)
    signed_in(second, LAPTOP)


ATTACKER = """<!doctype html>
<title>A page of another origin</title>
<form id="form" method="post" action="{api}/logout-all"><input name="x" value="1"></form>
<script>
  // A socket with the browser's cookie: what does it hear?
  window.openSocket = () => new Promise((resolve) => {{
    const socket = new WebSocket("{gateway}", ["sessionwire.v1"]);
    const heard = [];
    socket.onmessage = (event) => heard.push(event.data);
    socket.onclose = (event) => resolve({{ code: event.code, heard }});
  }});
  // Credentialed fetches: a no-cors one goes out as a "simple" request, with the cookie.
  window.post = (path, mode) =>
    fetch("{api}" + path, {{ method: "POST", credentials: "include", mode }})
      .then((answer) => answer.type, (error) => "refused: " + error.name);
</script>"""


def test_a_page_of_another_origin_of_the_site_can_do_nothing_with_the_cookie(
    stack: Stack, open_device: OpenDevice, static_site: StaticSite
) -> None:
    laptop = open_device(stack.url, FIREFOX_UBUNTU)
    sign_in(laptop)
    signed_in(laptop, LAPTOP)
    api = stack.api.url
    static_site.pages["/evil.html"] = ATTACKER.format(api=api, gateway=gateway_url(stack))
    evil = laptop.context.new_page()  # the same browser: it holds the cookie
    evil.goto(static_site.url("/evil.html"))

    closed = evil.evaluate("openSocket()")
    assert closed == {"code": 1006, "heard": []}  # refused before the upgrade: no `ready`
    assert evil.evaluate("post('/sessions/revoke-others', 'no-cors')") == "opaque"
    assert evil.evaluate("post('/logout-all', 'cors')") == "refused: TypeError"
    with evil.expect_navigation():
        evil.evaluate("document.getElementById('form').submit()")
    assert "csrf_refused" in evil.content()

    # The cookie did ride along each time (the API authenticated it, then refused it) ...
    origin = repr(static_site.origin)
    log = stack.api.log()
    assert f"refused POST /logout-all from origin {origin}" in log
    assert f"refused POST /sessions/revoke-others from origin {origin}" in log
    assert log.count(f"from origin {origin}: not an allowed page") == 3
    assert f"refused a WebSocket from origin {origin}" in stack.worker.log()
    # ... and nothing happened: the laptop is signed in and live.
    assert laptop.context.request.get(api + "/me").status == 200
    laptop.reload()
    signed_in(laptop, LAPTOP)


PRODUCT = """<!doctype html>
<title>Shop</title>
<p>Signed in as <b id="who"></b></p>
<ul id="sessions"></ul>
<p id="said" role="status"></p>
<p id="status"></p>
<script type="module">
  import {{ Sessionwire }} from "{api}/sdk/sessionwire.js";
  const sw = new Sessionwire({{ api: "{api}" }});
  sw.on("signedOut", ({{ text }}) => {{ document.getElementById("said").textContent = text; }});
  sw.on("status", ({{ status }}) => {{ document.getElementById("status").textContent = status; }});
  window.signIn = async (username, password) => {{
    const me = await sw.signIn({{ username, password, deviceName: "Shop tab" }});
    document.getElementById("who").textContent = me.username;
    const items = (await sw.sessions()).map((s) => {{
      const item = document.createElement("li");
      item.textContent = s.device_name + (s.current ? " (this device)" : "");
      return item;
    }});
    document.getElementById("sessions").replaceChildren(...items);
    return me.session.session_id;
  }};
  window.loaded = true;
</script>"""


@pytest.fixture
def product_stack(redis_url: str, tmp_path: Path, static_site: StaticSite) -> Iterator[Stack]:
    """The stack with a product's front end allowed: CORS_ORIGINS and the socket's origins."""
    with running_stack(
        redis_url,
        tmp_path,
        socket_origins=(static_site.origin,),
        CORS_ORIGINS=static_site.origin,
        ADMIN_TOKEN=ADMIN_TOKEN,
    ) as started:
        yield started


def test_a_product_page_on_an_allowed_origin_uses_the_library(
    product_stack: Stack, open_device: OpenDevice, static_site: StaticSite
) -> None:
    static_site.pages["/shop.html"] = PRODUCT.format(api=product_stack.api.url)
    shop = open_device(static_site.url("/shop.html"), FIREFOX_UBUNTU)
    shop.wait_for_function("window.loaded === true", timeout=STARTUP_MS)
    session_id = shop.evaluate(f"signIn({json.dumps(USER)}, {json.dumps(PASSWORD)})")
    expect(shop.locator("#who")).to_have_text(USER)
    expect(shop.locator("#sessions")).to_have_text("Shop tab (this device)")
    expect(shop.locator("#status")).to_have_text("live", timeout=STARTUP_MS)
    assert shop.evaluate("document.cookie") == ""  # the API's cookie is HttpOnly

    admin(product_stack, "DELETE", f"/admin/users/{USER}/sessions/{session_id}")
    expect(shop.locator("#said")).to_have_text(
        "An administrator signed this device out.", timeout=LIVE_WITHIN_MS
    )
    expect(shop.locator("#status")).to_have_text("off")


def test_the_fresh_session_guard_in_words(
    redis_url: str, tmp_path: Path, open_device: OpenDevice
) -> None:
    with running_stack(redis_url, tmp_path, FRESH_SESSION_GUARD="3600") as stack:
        laptop = open_device(stack.url, FIREFOX_UBUNTU)
        sign_in(laptop)
        signed_in(laptop, LAPTOP)
        thief = open_device(stack.url, IPHONE, phone=True)
        sign_in(thief)
        signed_in(thief, PHONE)
        thief.get_by_role("button", name="Sign out all other devices").click()
        expect(thief.get_by_role("alert")).to_have_text(
            "This device signed in too recently to sign out your older devices. "
            "Try again in 1 hour."
        )
        expect(live_status(laptop)).to_have_text("Live")  # nothing happened to it
        # The older device may end the newer one, at once.
        card(laptop, PHONE).get_by_role("button", name="Sign out").click()
        expect(signed_out_heading(thief)).to_be_visible(timeout=LIVE_WITHIN_MS)
