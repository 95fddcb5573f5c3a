"""The page's "Recent activity" and the admin API's sign-outs, in headless Chromium."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import USER, OpenDevice, Stack, running_stack
from tests.browser.test_page import (
    FIREFOX_UBUNTU,
    LAPTOP,
    LIVE_WITHIN_MS,
    PHONE,
    laptop_and_phone,
    sign_in,
    signed_in,
    signed_out_heading,
)
from tests.test_admin_api import ADMIN_TOKEN

Screenshot = Callable[[Page, str], None]


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    """API and worker with the admin API on."""
    with running_stack(redis_url, tmp_path, ADMIN_TOKEN=ADMIN_TOKEN) as started:
        yield started


def admin(stack: Stack, method: str, path: str, body: Any = None) -> Any:
    """One admin API call, as the product's back end makes it."""
    request = urllib.request.Request(
        stack.api.url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.loads(resp.read())


def session_of(stack: Stack, device: str) -> str:
    sessions = admin(stack, "GET", f"/admin/users/{USER}/sessions")["sessions"]
    (found,) = [s["session_id"] for s in sessions if s["device_name"] == device]
    return found  # type: ignore[no-any-return]


def activity(page: Page) -> Locator:
    return page.get_by_role("list", name="Recent activity").get_by_role("listitem")


def expect_entry(
    entry: Locator, what: str, device: str, where: str, timeout: float = LIVE_WITHIN_MS + 1000
) -> None:
    """One line of the activity log: what happened, on which device, from where."""
    expect(entry.locator(".what")).to_have_text(what, timeout=timeout)
    expect(entry.locator(".subject")).to_have_text(device)
    expect(entry).to_contain_text(f"{where} · ")


def laptop_alone(stack: Stack, open_device: OpenDevice) -> Page:
    """Alice signed in on her laptop only, live."""
    laptop = open_device(stack.url, FIREFOX_UBUNTU)
    sign_in(laptop)
    signed_in(laptop, LAPTOP)
    return laptop


def test_recent_activity_is_shown_and_updated_live(
    stack: Stack, open_device: OpenDevice, screenshot: Screenshot
) -> None:
    laptop = laptop_alone(stack, open_device)
    expect(activity(laptop)).to_have_count(1)
    expect_entry(activity(laptop).first, "Signed in", LAPTOP, "127.0.0.1")
    expect(activity(laptop).first).to_contain_text("just now")

    # The product's back end signs Alice in on a kiosk: the laptop hears of it, live.
    admin(
        stack,
        "POST",
        "/admin/sessions",
        {"username": USER, "device_name": "Kiosk", "ip": "203.0.113.5"},
    )
    expect(activity(laptop)).to_have_count(2, timeout=LIVE_WITHIN_MS + 1000)
    expect_entry(activity(laptop).first, "Signed in", "Kiosk", "203.0.113.5")

    laptop.get_by_role("list", name="Other devices").get_by_role("listitem").filter(
        has_text="Kiosk"
    ).get_by_role("button", name="Sign out").click()
    expect_entry(activity(laptop).first, f"Signed out by {LAPTOP}", "Kiosk", "203.0.113.5")
    expect(activity(laptop)).to_have_count(3)
    # The exact time is there for whoever points at it.
    assert activity(laptop).first.locator("time").get_attribute("title")
    screenshot(laptop, "activity")

    # A reload reads it back from the API, newest first.
    laptop.reload()
    signed_in(laptop, LAPTOP)
    expect(activity(laptop).locator(".what")).to_have_text(
        [f"Signed out by {LAPTOP}", "Signed in", "Signed in"]
    )


def test_an_administrator_signs_devices_out_in_words(
    stack: Stack, open_device: OpenDevice, screenshot: Screenshot
) -> None:
    laptop, phone = laptop_and_phone(stack, open_device)

    admin(stack, "DELETE", f"/admin/users/{USER}/sessions/{session_of(stack, PHONE)}")
    expect(signed_out_heading(phone)).to_be_visible(timeout=LIVE_WITHIN_MS)
    expect(phone.get_by_text("An administrator signed this device out.")).to_be_visible()
    expect(phone.locator("#signed-out-by")).to_contain_text("Signed out")
    expect(phone.locator("#signed-out-by")).not_to_contain_text("Signed out by")
    assert phone.evaluate("sessionStorage.getItem('sessionwire.token')") is None
    screenshot(phone, "signed-out-admin")
    expect_entry(activity(laptop).first, "Signed out by an administrator", PHONE, "127.0.0.1")

    admin(stack, "POST", f"/admin/users/{USER}/logout-all", {"reason": "password_changed"})
    expect(signed_out_heading(laptop)).to_be_visible(timeout=LIVE_WITHIN_MS)
    expect(laptop.get_by_text("Your password was changed")).to_be_visible()

    # Signed in again, the log tells the story.
    laptop.get_by_role("button", name="Sign in again").click()
    sign_in(laptop)
    signed_in(laptop, LAPTOP)
    expect_entry(activity(laptop).nth(1), "Signed out: password changed", LAPTOP, "127.0.0.1")


def test_someone_trying_your_password_is_shown(
    stack: Stack, open_device: OpenDevice, screenshot: Screenshot
) -> None:
    laptop = laptop_alone(stack, open_device)
    for _ in range(3):  # a guesser, from this machine's address
        request = urllib.request.Request(
            stack.api.url + "/login",
            data=json.dumps({"username": USER, "password": "guess"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401
    laptop.reload()
    signed_in(laptop, LAPTOP)
    failed = activity(laptop).first
    expect(failed.locator(".what")).to_have_text(
        "Someone tried your password 3 times from 127.0.0.1"
    )
    expect(failed).to_contain_text("127.0.0.1 · just now")
    expect(activity(laptop).nth(1).locator(".what")).to_have_text("Signed in")
    screenshot(laptop, "failed-sign-ins")
