"""How the page looks: readable buttons in both colour schemes, long device names."""

from __future__ import annotations

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import OpenDevice, Stack
from tests.browser.test_page import (
    FIREFOX_UBUNTU,
    IPHONE,
    LAPTOP,
    PHONE,
    card,
    sign_in,
    signed_in,
    this_device,
)

AA_TEXT = 4.5  # WCAG 2.x AA, normal-size text
LONG_NAME = "Kitchen-tablet-by-the-window-" * 3 + "x" * 13  # 100 characters, no space to wrap at

# Each visible button's text colour and the colour behind it: its own background, else the
# first ancestor's that is not transparent (the buttons have no background images).
BUTTON_COLOURS = """() => {
  const opaque = (c) => c !== "rgba(0, 0, 0, 0)" && c !== "transparent";
  const behind = (el) => {
    for (; el; el = el.parentElement) {
      const bg = getComputedStyle(el).backgroundColor;
      if (opaque(bg)) return bg;
    }
    return getComputedStyle(document.documentElement).backgroundColor;
  };
  return [...document.querySelectorAll("button")]
    .filter((b) => b.offsetParent !== null && !b.disabled)
    .map((b) => [b.textContent.trim(), getComputedStyle(b).color, behind(b)]);
}"""


# The card's words beside the buttons: the online badge, the labels, the muted details.
TEXT_COLOURS = """() => {
  const opaque = (c) => c !== "rgba(0, 0, 0, 0)" && c !== "transparent";
  const behind = (el) => {
    for (; el; el = el.parentElement) {
      const bg = getComputedStyle(el).backgroundColor;
      if (opaque(bg)) return bg;
    }
    return getComputedStyle(document.documentElement).backgroundColor;
  };
  const shown = ".device .online, .device dt, .device-what, .tell-apart, .event .detail";
  return [...document.querySelectorAll(shown)]
    .filter((e) => e.offsetParent !== null)
    .map((e) => [e.textContent.trim(), getComputedStyle(e).color, behind(e)]);
}"""


def text_contrasts(page: Page) -> dict[str, float]:
    found: dict[str, float] = {}
    for text, fg, bg in page.evaluate(TEXT_COLOURS):
        found[text] = min(found.get(text, 99.0), contrast(fg, bg))
    return found


def rgb(css: str) -> tuple[int, int, int]:
    """`rgb(r, g, b)` or `rgba(r, g, b, 1)` as three numbers (the page's colours are opaque)."""
    parts = css[css.index("(") + 1 : -1].split(",")
    assert len(parts) == 3 or float(parts[3]) == 1, css
    red, green, blue = (int(float(part)) for part in parts[:3])
    return red, green, blue


def luminance(colour: tuple[int, int, int]) -> float:
    """WCAG 2.x relative luminance."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(c) for c in colour)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(one: str, other: str) -> float:
    lighter, darker = sorted((luminance(rgb(one)), luminance(rgb(other))), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def button_contrasts(page: Page) -> dict[str, float]:
    return {text: contrast(fg, bg) for text, fg, bg in page.evaluate(BUTTON_COLOURS)}


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_every_button_is_readable(stack: Stack, open_device: OpenDevice, dark: bool) -> None:
    laptop = open_device(stack.url, FIREFOX_UBUNTU, dark=dark)
    expect(laptop.get_by_role("button", name="Sign in")).to_be_visible()
    on_sign_in = button_contrasts(laptop)
    assert on_sign_in.keys() == {"Sign in"}

    phone = open_device(stack.url, IPHONE, phone=True)
    for page, device in ((laptop, LAPTOP), (phone, PHONE)):
        sign_in(page)
        signed_in(page, device)
    expect(card(laptop, PHONE)).to_be_visible()
    on_devices = button_contrasts(laptop)
    assert on_devices.keys() == {
        "Rename",
        "Sign out",
        "Sign out all other devices",
        "Sign out everywhere",
    }
    card(laptop, PHONE).get_by_role("button", name=f"Rename {PHONE}").click()
    renaming = button_contrasts(laptop)
    assert {"Save", "Cancel"} <= renaming.keys()
    texts = text_contrasts(laptop)
    assert {"Online now", "Where", "Last seen"} <= texts.keys(), texts

    everything = on_sign_in | on_devices | renaming | texts
    low = {k: round(v, 2) for k, v in everything.items() if v < AA_TEXT}
    assert not low, f"below {AA_TEXT}:1 ({'dark' if dark else 'light'})"


def box(locator: Locator) -> dict[str, float]:
    found = locator.bounding_box()
    assert found is not None
    return found


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_a_long_device_name_wraps_and_leaves_its_button_alone(
    stack: Stack, open_device: OpenDevice, phone: bool
) -> None:
    laptop = open_device(stack.url, FIREFOX_UBUNTU, phone=phone)
    sign_in(laptop)
    signed_in(laptop, LAPTOP)
    kitchen = open_device(stack.url, IPHONE)
    sign_in(kitchen, device=LONG_NAME)
    signed_in(kitchen, LONG_NAME)
    long_card = card(laptop, LONG_NAME)
    expect(long_card).to_be_visible()
    # Both online (the last redraw the sockets cause), so the boxes measured stay put.
    for each in (long_card, this_device(laptop)):
        expect(each.get_by_text("Online now", exact=True)).to_be_visible()

    mine = box(this_device(laptop).get_by_role("button", name="Sign out"))
    theirs = box(long_card.get_by_role("button", name="Sign out"))
    assert (theirs["width"], theirs["height"]) == (mine["width"], mine["height"])
    # The whole name is there, wrapped beside (or, on a phone, above) the button.
    name = box(long_card.locator(".device-name"))
    assert name["x"] + name["width"] <= theirs["x"] or name["y"] + name["height"] <= theirs["y"]
    expect(long_card.locator(".device-name")).to_have_text(LONG_NAME)


# Each placeholder's width in its input's own font, beside the room the input gives text.
PLACEHOLDER_ROOM = """() => [...document.querySelectorAll("input[placeholder]")]
  .filter((input) => input.offsetParent !== null)
  .map((input) => {
    const style = getComputedStyle(input);
    const context = document.createElement("canvas").getContext("2d");
    context.font = style.font;
    const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return [input.placeholder, context.measureText(input.placeholder).width, room];
  })"""


def test_the_phone_sized_forms_placeholders_fit(stack: Stack, open_device: OpenDevice) -> None:
    phone = open_device(stack.url, IPHONE, phone=True)
    expect(phone.get_by_role("button", name="Sign in")).to_be_visible()
    shown = phone.evaluate(PLACEHOLDER_ROOM)
    assert [text for text, _, _ in shown] == ["Work laptop"]
    for text, needed, room in shown:
        assert needed <= room, f"{text!r} needs {needed:.0f}px, has {room:.0f}px"
