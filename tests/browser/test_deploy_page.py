"""The page through docs/DEPLOY.md's deployment: nginx in front of the real API and worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import DEMO_USERS, OpenDevice
from tests.browser.test_page import (
    FIREFOX_UBUNTU,
    IPHONE,
    LAPTOP,
    LIVE_WITHIN_MS,
    PHONE,
    card,
    sign_in,
    signed_in,
    signed_out_heading,
    sockets_opened,
)
from tests.deployment import Deployment, deployed


@pytest.fixture
def deployment(redis_url: str, tmp_path: Path) -> Iterator[Deployment]:
    """The deployment, with the browser tests' users."""
    with deployed(redis_url, tmp_path, users_file=DEMO_USERS) as running:
        yield running


def test_the_page_through_nginx_goes_live_and_hears_a_sign_out(
    deployment: Deployment, open_device: OpenDevice
) -> None:
    laptop = open_device(deployment.page, FIREFOX_UBUNTU)
    laptop_sockets = sockets_opened(laptop)
    sign_in(laptop)
    signed_in(laptop, LAPTOP)  # "Live": its socket is up
    # Through nginx, as GATEWAY_PUBLIC_URL says: not around it to the worker's own port.
    assert [socket.url for socket in laptop_sockets] == [deployment.ws]

    phone = open_device(deployment.page, IPHONE, phone=True)
    sign_in(phone)
    signed_in(phone, PHONE)
    expect(card(laptop, PHONE)).to_be_visible(timeout=LIVE_WITHIN_MS + 1000)

    card(laptop, PHONE).get_by_role("button", name="Sign out").click()
    expect(signed_out_heading(phone)).to_be_visible(timeout=LIVE_WITHIN_MS)
    expect(phone.get_by_text("Another of your devices signed this one out.")).to_be_visible()
    expect(phone.get_by_text(f"Signed out by {LAPTOP}")).to_be_visible()

    log = deployment.proxy.access_log()
    assert '"GET /ws HTTP/1.1" 101 ' in log  # both sockets were upgrades nginx passed on
    assert '"DELETE /sessions/' in log
