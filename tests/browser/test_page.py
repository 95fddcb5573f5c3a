"""The "Your devices" page in headless Chromium, against the real API, worker and Redis.

Every check reads what a person would see on the screen.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Dialog, Locator, Page, WebSocket, expect

from tests.browser.conftest import PASSWORD, USER, OpenDevice, Stack, running_stack
from tests.processes import Process

Screenshot = Callable[[Page, str], None]

FIREFOX_UBUNTU = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
EDGE_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0"
)
LAPTOP = "Firefox on Ubuntu"
PHONE = "Mobile Safari on iPhone"
LIVE_WITHIN_MS = 1000  # the promise: a change elsewhere shows within a second
STARTUP_MS = 5000


def sign_in(page: Page, username: str = USER, password: str = PASSWORD, device: str = "") -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Device name").fill(device)
    page.get_by_role("button", name="Sign in").click()


def laptop_and_phone(stack: Stack, open_device: OpenDevice) -> tuple[Page, Page]:
    """Alice signed in on two devices, both live."""
    laptop, phone = open_device(stack.url, FIREFOX_UBUNTU), open_device(stack.url, IPHONE, True)
    for page, device in ((laptop, LAPTOP), (phone, PHONE)):
        sign_in(page)
        signed_in(page, device)
    return laptop, phone


def sign_out_everywhere(page: Page, *, sure: bool = True) -> str:
    """Press "Sign out everywhere" and answer its question (yes unless `sure` is False)."""
    asked: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(f"{dialog.type}: {dialog.message}")
        if sure:
            dialog.accept()
        else:
            dialog.dismiss()

    page.once("dialog", answer)
    page.get_by_role("button", name="Sign out everywhere").click()
    assert asked, "no question was asked"
    return asked[0]


def signed_in(page: Page, device: str) -> None:
    """Wait for the device list, with this device first and the live link up."""
    expect(this_device(page)).to_contain_text(device, timeout=STARTUP_MS)
    expect(live_status(page)).to_have_text("Live", timeout=STARTUP_MS)


def this_device(page: Page) -> Locator:
    return page.get_by_role("list", name="This device")


def other_devices(page: Page) -> Locator:
    return page.get_by_role("list", name="Other devices")


def card(page: Page, device: str) -> Locator:
    return other_devices(page).get_by_role("listitem").filter(has_text=device)


def sockets_opened(page: Page) -> list[WebSocket]:
    """Every WebSocket the page opens from now on."""
    opened: list[WebSocket] = []
    page.on("websocket", lambda socket: opened.append(socket))
    return opened


def live_status(page: Page) -> Locator:
    return page.locator("header").get_by_role("status")


def signed_out_heading(page: Page) -> Locator:
    return page.get_by_role("heading", name="You were signed out")


def test_sign_in_errors_are_shown_in_words(
    api_only: Process, open_device: OpenDevice, screenshot: Screenshot
) -> None:
    page = open_device(api_only.url + "/", FIREFOX_UBUNTU)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_label("Username")).to_be_focused()
    screenshot(page, "sign-in")

    # Keyboard only: type, Tab to the next field, Enter submits.
    page.keyboard.type(USER)
    page.keyboard.press("Tab")
    page.keyboard.type("wrong password")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    screenshot(page, "sign-in-error")

    sign_in(page, password="wrong again")  # the second failure reaches LOGIN_MAX_FAILURES=2
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    sign_in(page)
    expect(page.get_by_role("alert")).to_have_text(
        "Too many failed sign-ins. Try again in 5 minutes."
    )

    api_only.stop()
    sign_in(page, username="bob")
    expect(page.get_by_role("alert")).to_contain_text("Can't reach the Sessionwire server")


def test_both_devices_listed_and_a_new_sign_in_appears_live(
    stack: Stack, open_device: OpenDevice, screenshot: Screenshot
) -> None:
    laptop = open_device(stack.url, FIREFOX_UBUNTU)
    sign_in(laptop)
    signed_in(laptop, LAPTOP)
    expect(laptop.get_by_text("No other device is signed in.")).to_be_visible()

    phone = open_device(stack.url, IPHONE, phone=True)
    sign_in(phone)
    expect(laptop.get_by_role("status").filter(has_text="New sign-in on")).to_have_text(
        f"New sign-in on {PHONE} (127.0.0.1)", timeout=LIVE_WITHIN_MS + 1000
    )
    expect(card(laptop, PHONE)).to_contain_text("127.0.0.1")
    expect(card(laptop, PHONE)).to_contain_text("just now")
    screenshot(laptop, "new-sign-in")

    signed_in(phone, PHONE)
    expect(card(phone, LAPTOP)).to_be_visible()
    expect(card(phone, LAPTOP).get_by_role("button", name=f"Sign out {LAPTOP}")).to_be_visible()
    screenshot(phone, "devices")

    # A reload keeps this browser signed in (its cookie), as the same device.
    phone.reload()
    signed_in(phone, PHONE)
    expect(other_devices(laptop).get_by_role("listitem")).to_have_count(1)


def test_signing_out_a_device_shows_it_signed_out_within_a_second(
    stack: Stack, open_device: OpenDevice, screenshot: Screenshot
) -> None:
    laptop, phone = laptop_and_phone(stack, open_device)

    card(laptop, PHONE).get_by_role("button", name="Sign out").click()
    expect(signed_out_heading(phone)).to_be_visible(timeout=LIVE_WITHIN_MS)
    expect(phone.get_by_text("Another of your devices signed this one out.")).to_be_visible()
    expect(phone.get_by_text(f"Signed out by {LAPTOP} (127.0.0.1)")).to_be_visible()
    expect(live_status(phone)).to_be_hidden()
    expect(card(laptop, PHONE)).to_have_count(0)
    screenshot(phone, "signed-out")

    phone.get_by_role("button", name="Sign in again").click()
    expect(phone.get_by_label("Password")).to_be_focused()
    sign_in(phone)
    signed_in(phone, PHONE)
    expect(card(laptop, PHONE)).to_have_count(1)

    this_device(phone).get_by_role("button", name="Sign out this device").click()
    expect(phone.get_by_text("You signed out of this device.")).to_be_visible()
    expect(card(laptop, PHONE)).to_have_count(0, timeout=LIVE_WITHIN_MS)


def test_sign_out_all_other_devices_then_everywhere(stack: Stack, open_device: OpenDevice) -> None:
    laptop, phone = laptop_and_phone(stack, open_device)
    kitchen = open_device(stack.url, EDGE_WINDOWS)
    kitchen_sockets = sockets_opened(kitchen)
    sign_in(kitchen, device="Kitchen PC")  # a typed name wins over the User-Agent's
    signed_in(kitchen, "Kitchen PC")
    expect(other_devices(laptop).get_by_role("listitem")).to_have_count(2)

    laptop.get_by_role("button", name="Sign out all other devices").click()
    for page in (phone, kitchen):
        expect(signed_out_heading(page)).to_be_visible(timeout=LIVE_WITHIN_MS)
        expect(page.get_by_text("signed out all other devices")).to_be_visible()
        expect(page.get_by_text(f"Signed out by {LAPTOP}")).to_be_visible()
    expect(laptop.get_by_text("No other device is signed in.")).to_be_visible()
    expect(laptop.get_by_role("button", name="Sign out all other devices")).to_be_disabled()

    phone.get_by_role("button", name="Sign in again").click()
    sign_in(phone)
    signed_in(phone, PHONE)
    # A second thought: nothing happens.
    question = sign_out_everywhere(laptop, sure=False)
    assert question == (
        "confirm: Sign out everywhere? Every device signed in to your account will be signed "
        "out, this one too."
    )
    phone.reload()  # its session still works, after the time a sign-out would have taken
    signed_in(phone, PHONE)
    expect(card(laptop, PHONE)).to_be_visible()

    sign_out_everywhere(laptop)
    expect(laptop.get_by_text("You signed out on every device.")).to_be_visible()
    expect(laptop.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(signed_out_heading(phone)).to_be_visible(timeout=LIVE_WITHIN_MS)
    expect(phone.get_by_text("Someone signed out everywhere")).to_be_visible()
    # Seconds after its 4501 close, the kitchen page has not tried to reconnect.
    assert len(kitchen_sockets) == 1


def test_a_known_browser_signs_in_while_guessers_lock_its_user_out(
    redis_url: str, tmp_path: Path, open_device: OpenDevice
) -> None:
    with running_stack(redis_url, tmp_path, LOGIN_MAX_FAILURES="2") as stack:
        laptop = open_device(stack.url, FIREFOX_UBUNTU)
        sign_in(laptop)
        signed_in(laptop, LAPTOP)
        sign_out_everywhere(laptop)
        expect(laptop.get_by_role("heading", name="Sign in")).to_be_visible()

        stranger = open_device(stack.url, EDGE_WINDOWS)
        for password in ("guess 1", "guess 2", PASSWORD):
            sign_in(stranger, password=password)
        expect(stranger.get_by_role("alert")).to_contain_text("Too many failed sign-ins")
        sign_in(laptop)  # its device token has a failure budget of its own
        signed_in(laptop, LAPTOP)


def test_reconnects_after_the_worker_restarts(stack: Stack, open_device: OpenDevice) -> None:
    laptop, phone = laptop_and_phone(stack, open_device)
    phone_sockets = sockets_opened(phone)

    stack.worker.stop()
    expect(live_status(laptop)).to_have_text("Reconnecting…")
    # With no socket, the phone learns of its sign-out from the API's 401 `session_revoked`.
    card(laptop, PHONE).get_by_role("button", name="Sign out").click()
    expect(signed_out_heading(phone)).to_be_visible(timeout=STARTUP_MS)
    expect(phone.get_by_text(f"Signed out by {LAPTOP}")).to_be_visible()
    sockets_when_signed_out = len(phone_sockets)

    stack.worker.start()
    expect(live_status(laptop)).to_have_text("Live", timeout=STARTUP_MS * 2)
    kitchen = open_device(stack.url, EDGE_WINDOWS)
    sign_in(kitchen, device="Kitchen PC")
    expect(laptop.get_by_text("New sign-in on Kitchen PC")).to_be_visible(timeout=LIVE_WITHIN_MS)
    # Signed out while the gateway was away, the phone has stayed signed out.
    assert len(phone_sockets) == sockets_when_signed_out


def test_an_idle_session_expires_on_screen(
    redis_url: str, tmp_path: Path, open_device: OpenDevice
) -> None:
    with running_stack(redis_url, tmp_path, SESSION_IDLE_TIMEOUT="2") as short_lived:
        laptop = open_device(short_lived.url, FIREFOX_UBUNTU)
        sign_in(laptop)
        signed_in(laptop, LAPTOP)
        expect(signed_out_heading(laptop)).to_be_visible(timeout=STARTUP_MS * 2)
        expect(laptop.get_by_text("Your session expired.")).to_be_visible()
