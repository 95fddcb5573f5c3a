"""Issue 22's "Your devices": two browsers, a phone and a terminal a person can tell apart,
who is online now, rename, and nothing sent with a revoked credential. Headless Chromium
against the real API, worker and Redis; the terminal is the `sessionwire` client itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import APIResponse, Locator, Page, Request, Route, expect

from tests.browser.conftest import PASSWORD, USER, OpenDevice, Stack, running_stack
from tests.browser.test_page import (
    IPHONE,
    PHONE,
    STARTUP_MS,
    card,
    other_devices,
    sign_in,
    signed_in,
    signed_out_heading,
    this_device,
)
from tests.conftest import ROOT
from tests.mmdb import write_mmdb
from tests.test_admin_api import ADMIN_TOKEN

Screenshot = Callable[[Page, str], None]

# Two browsers of one kind: the case the issue starts from (two identical cards).
CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
CHROME = "Chrome on Linux"
TERMINAL = "terminal"
PRESENCE_MS = 5000  # the contract: right within 2 s of a connect or a disconnect


class Terminal:
    """The terminal client (`python -m clients.terminal.cli`) as one device of the user."""

    def __init__(self, stack: Stack, home: Path) -> None:
        self.env = {
            **os.environ,
            "SESSIONWIRE_HOME": str(home),
            "SESSIONWIRE_API": stack.api.url,
            "SESSIONWIRE_GATEWAY": f"ws://127.0.0.1:{stack.worker.port}/ws",
            "SESSIONWIRE_PASSWORD": PASSWORD,
            "PYTHONUNBUFFERED": "1",
        }
        self.listener: subprocess.Popen[str] | None = None

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "clients.terminal.cli", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def listen(self) -> None:
        """`sessionwire listen` until its "connected as" line: its socket is open."""
        self.listener = subprocess.Popen(
            [sys.executable, "-m", "clients.terminal.cli", "listen"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.listener.stdout is not None
        line = self.listener.stdout.readline()
        assert line.startswith(f"connected as {USER}"), line

    def stop_listening(self) -> None:
        if self.listener is not None:
            self.listener.terminate()
            self.listener.wait(timeout=10)
            if self.listener.stdout is not None:
                self.listener.stdout.close()
            self.listener = None


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    """API and worker; a device may go offline and online again within a second here
    (PRESENCE_NOTICE_INTERVAL, 5 s by default, holds a flapping device's notices back)."""
    with running_stack(redis_url, tmp_path, PRESENCE_NOTICE_INTERVAL="0.2") as started:
        yield started


@pytest.fixture
def terminal(stack: Stack, tmp_path: Path) -> Iterator[Terminal]:
    found = Terminal(stack, tmp_path / "terminal-home")
    yield found
    found.stop_listening()


def cards(page: Page) -> Locator:
    return page.locator("li.device")


def online(device_card: Locator) -> Locator:
    return device_card.get_by_text("Online now", exact=True)


def four_devices(stack: Stack, open_device: OpenDevice, terminal: Terminal) -> list[Page]:
    """user123 on two Chrome browsers, a phone and the terminal client (listening)."""
    desk, second = open_device(stack.url, CHROME_LINUX), open_device(stack.url, CHROME_LINUX)
    phone = open_device(stack.url, IPHONE, phone=True)
    for page, name in ((desk, CHROME), (second, CHROME), (phone, PHONE)):
        sign_in(page)
        signed_in(page, name)
    terminal.run("login", "-u", USER)
    terminal.listen()
    expect(cards(desk)).to_have_count(4)
    return [desk, second, phone]


def test_four_devices_a_person_can_tell_apart_and_who_is_online(
    stack: Stack, open_device: OpenDevice, terminal: Terminal, screenshot: Screenshot
) -> None:
    desk, second, phone = four_devices(stack, open_device, terminal)
    mine = this_device(desk).get_by_role("listitem")
    twin = card(desk, CHROME)
    on_phone, on_terminal = card(desk, PHONE), card(desk, TERMINAL)

    # What each is, in words (and an icon per kind), and where: this network, here.
    for each, kind, words in (
        (mine, "desktop", "Computer · Chrome 120 on Linux"),
        (twin, "desktop", "Computer · Chrome 120 on Linux"),
        (on_phone, "phone", "Phone · Safari 17 on iOS 17.1"),
        (on_terminal, "terminal", "Terminal · sessionwire 0.1 on Linux"),
    ):
        expect(each.locator(".device-what")).to_have_text(words)
        expect(each).to_have_attribute("data-device-type", kind)
        expect(each.locator(".device-icon svg")).to_have_count(1)
        expect(each.locator(".where")).to_have_text("this network · 127.0.0.1")
        expect(each.locator(".created")).to_have_text("just now")
        seen = each.locator(".seen")
        expect(seen).to_have_text("active now")
        assert seen.get_attribute("title"), "the exact time is there on hover"
    # Every one has its socket open: online now, in words.
    for each in (mine, twin, on_phone, on_terminal):
        expect(online(each)).to_be_visible(timeout=PRESENCE_MS)

    # The two Chromes share a name: each card says when it signed in, from where, its id.
    ids = {c.get_attribute("data-session-id") for c in (mine, twin)}
    for each in (mine, twin):
        tell = each.locator(".tell-apart")
        expect(tell).to_contain_text("Another device has this name: this one signed in ")
        expect(tell).to_contain_text("last from 127.0.0.1 (id ")
        expect(tell).to_contain_text(f"(id {(each.get_attribute('data-session-id') or '')[:8]})")
    assert len(ids) == 2
    for each in (on_phone, on_terminal):
        expect(each.locator(".tell-apart")).to_be_hidden()
    # At a glance: no two cards read the same.
    shown = [cards(desk).nth(i).inner_text() for i in range(4)]
    assert len(set(shown)) == 4, shown

    screenshot(desk, "devices-four")
    desk.emulate_media(color_scheme="dark")
    screenshot(desk, "devices-four-dark")
    desk.emulate_media(color_scheme="light")
    expect(cards(phone)).to_have_count(4)
    screenshot(phone, "devices-four-phone")

    # The terminal stops listening: offline (last seen "active now"); back: online again.
    terminal.stop_listening()
    expect(online(on_terminal)).to_be_hidden(timeout=PRESENCE_MS)
    expect(on_terminal.locator(".seen")).to_have_text("active now")
    terminal.listen()
    expect(online(on_terminal)).to_be_visible(timeout=PRESENCE_MS)
    # The second browser closes: its card goes offline on the others, and stays listed.
    second.context.close()
    expect(online(twin)).to_be_hidden(timeout=PRESENCE_MS)
    expect(online(card(phone, TERMINAL))).to_be_visible()
    expect(cards(phone)).to_have_count(4)
    expect(phone.locator('.device[data-online="true"]')).to_have_count(3)


def test_rename_from_the_page_reaches_the_other_devices_live(
    stack: Stack, open_device: OpenDevice
) -> None:
    desk, second = open_device(stack.url, CHROME_LINUX), open_device(stack.url, CHROME_LINUX)
    for page in (desk, second):
        sign_in(page)
        signed_in(page, CHROME)

    # Escape cancels: nothing sent, the name as it was, focus back on the button.
    rename = this_device(desk).get_by_role("button", name="Rename this device")
    rename.click()
    field = this_device(desk).get_by_label("New name for this device")
    expect(field).to_be_focused()
    expect(field).to_have_value(CHROME)
    field.fill("Not this")
    field.press("Escape")
    expect(field).to_be_hidden()
    expect(rename).to_be_focused()
    expect(this_device(desk).locator(".device-name")).to_have_text(CHROME)

    # A name the API refuses is said in words, and the form stays open to fix it.
    rename.click()
    field.fill("bidi\u202eoverride")
    field.press("Enter")
    expect(this_device(desk).get_by_role("alert")).to_have_text(
        "That name can't be used: a name has 1 to 100 characters, none of them control or "
        "format characters (such as a line break)."
    )
    expect(field).to_be_visible()

    # Enter saves: here at once, on the other browser live (as "Work PC", not a twin).
    field.fill("Work PC")
    field.press("Enter")
    expect(this_device(desk).locator(".device-name")).to_have_text("Work PC")
    expect(this_device(desk).get_by_role("button", name="Rename this device")).to_be_focused()
    expect(desk.get_by_role("status").filter(has_text="Renamed")).to_have_text(
        f"Renamed {CHROME} to Work PC."
    )
    expect(card(second, "Work PC")).to_be_visible(timeout=STARTUP_MS)
    expect(card(second, "Work PC").locator(".tell-apart")).to_be_hidden()
    expect(this_device(second).locator(".tell-apart")).to_be_hidden()
    # The rename is in the activity log, the names set apart from the words (by the name
    # the device had when it did it).
    expect(second.locator(".event").first.locator(".what")).to_have_text(f"Renamed by {CHROME}")
    expect(second.locator(".event").first.locator(".subject")).to_have_text("Work PC")

    # Renaming another device from its card; a reload reads the names back.
    card(desk, CHROME).get_by_role("button", name=f"Rename {CHROME}").click()
    other_devices(desk).get_by_label(f"New name for {CHROME}").fill("Spare PC")
    other_devices(desk).get_by_label(f"New name for {CHROME}").press("Enter")
    expect(card(desk, "Spare PC")).to_be_visible()
    second.reload()
    signed_in(second, "Spare PC")
    expect(card(second, "Work PC")).to_be_visible()


def api_requests(page: Page, api: str) -> list[Request]:
    """Every request the page sends to the API from now on."""
    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if r.url.startswith(api) else None)
    return sent


def settled(page: Page, sent: list[Request]) -> list[str]:
    """What the page sent to the API after every timer fired (ten minutes on its clock),
    without the marker request the test sends last (requests are seen in order)."""
    page.clock.fast_forward("10:00")
    page.evaluate("fetch('/static/app.css?marker', { cache: 'no-store' }).then((r) => r.status)")
    assert sent and sent[-1].url.endswith("?marker"), [r.url for r in sent]
    return [f"{r.method} {r.url}" for r in sent[:-1]]


@pytest.mark.parametrize("how", ["itself", "everywhere", "another device"])
def test_no_request_with_the_revoked_credential_after_signing_out(
    stack: Stack, open_device: OpenDevice, how: str
) -> None:
    desk = open_device(stack.url, CHROME_LINUX)
    leaving = open_device(stack.url, IPHONE, phone=True, clock=True)
    for page, name in ((desk, CHROME), (leaving, PHONE)):
        sign_in(page)
        signed_in(page, name)
    sent = api_requests(leaving, stack.api.url)
    # The page does re-read the list on its clock (once a minute), while signed in.
    with leaving.expect_request(lambda r: r.url == stack.api.url + "/sessions"):
        leaving.clock.fast_forward("01:05")

    sent.clear()
    asked = []  # the sign-out's own request, the one thing that may use the credential
    if how == "itself":
        this_device(leaving).get_by_role("button", name="Sign out this device").click()
        expect(leaving.get_by_text("You signed out of this device.")).to_be_visible()
        asked = [f"POST {stack.api.url}/logout"]
    elif how == "everywhere":  # the socket hears the others' sign-outs meanwhile
        leaving.once("dialog", lambda dialog: dialog.accept())
        leaving.get_by_role("button", name="Sign out everywhere").click()
        expect(leaving.get_by_text("You signed out on every device.")).to_be_visible()
        expect(signed_out_heading(desk)).to_be_visible(timeout=STARTUP_MS)
        asked = [f"POST {stack.api.url}/logout-all"]
    else:
        card(desk, PHONE).get_by_role("button", name="Sign out").click()
        expect(signed_out_heading(leaving)).to_be_visible(timeout=STARTUP_MS)
        # The browser still holds the revoked cookie: only the page keeps it from going out.
        names = [c["name"] for c in leaving.context.cookies()]
        assert "__Host-sessionwire" in names, names
    assert settled(leaving, sent) == asked


ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
LONDON = {
    "city": {"names": {"en": "London"}},
    "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
    "subdivisions": [{"names": {"en": "England"}}],
}


def admin_sign_in(stack: Stack, ip: str, user_agent: str) -> None:
    """The product's back end signs user123 in on a device (the admin API)."""
    request = urllib.request.Request(
        stack.api.url + "/admin/sessions",
        data=json.dumps({"username": USER, "ip": ip, "user_agent": user_agent}).encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200


def test_a_list_read_before_a_change_does_not_undo_it(
    redis_url: str, tmp_path: Path, open_device: OpenDevice
) -> None:
    """The once-a-minute re-read is answered late, after a new device was heard of live: the
    answer predates the tablet, and the tablet stays listed (the change is replayed on it)."""
    with running_stack(redis_url, tmp_path, ADMIN_TOKEN=ADMIN_TOKEN) as admin:
        desk = open_device(admin.url, CHROME_LINUX, clock=True)
        sign_in(desk)
        signed_in(desk, CHROME)
        held: list[tuple[Route, APIResponse]] = []

        def hold(route: Route) -> None:
            held.append((route, route.fetch()))  # read now, answered when the test says

        desk.route(admin.api.url + "/sessions", hold)
        desk.clock.fast_forward("01:05")
        while not held:  # Playwright calls `hold` while the test waits on it
            desk.wait_for_timeout(20)
        admin_sign_in(admin, "192.0.2.7", ANDROID_TABLET)
        tablet = other_devices(desk).get_by_role("listitem")
        expect(tablet).to_have_count(1, timeout=STARTUP_MS)

        ((route, answer),) = held
        stale = answer.json()
        assert len(stale["sessions"]) == 1, stale  # it was read before the tablet
        stale["sessions"][0]["device_name"] = "Read late"  # to see when the page has used it
        route.fulfill(response=answer, json=stale)
        expect(this_device(desk).get_by_role("heading", name="Read late")).to_be_visible()
        expect(tablet).to_have_count(1)


def test_where_a_device_is_from_the_geoip_database(
    redis_url: str, tmp_path: Path, open_device: OpenDevice
) -> None:
    """With GEOIP_DB (the tests' own .mmdb), a card says the city and country."""
    database = write_mmdb(tmp_path / "city.mmdb", {"81.2.69.0/24": LONDON})
    env = {"ADMIN_TOKEN": ADMIN_TOKEN, "GEOIP_DB": str(database)}
    with running_stack(redis_url, tmp_path, **env) as geo:
        desk = open_device(geo.url, CHROME_LINUX)
        sign_in(desk)
        signed_in(desk, CHROME)
        # The product's back end signs user123 in on a tablet it saw at a London address.
        admin_sign_in(geo, "81.2.69.10", ANDROID_TABLET)
        tablet = other_devices(desk).get_by_role("listitem")
        expect(tablet).to_have_count(1, timeout=STARTUP_MS)
        expect(tablet.locator(".where")).to_have_text("London, United Kingdom · 81.2.69.10")
        expect(tablet.locator(".device-what")).to_have_text("Tablet · Chrome 120 on Android 14")
        expect(tablet).to_have_attribute("data-device-type", "tablet")
        expect(online(tablet)).to_be_hidden()  # no socket of it is open
        expect(this_device(desk).locator(".where")).to_have_text("this network · 127.0.0.1")
