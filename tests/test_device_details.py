"""What a session says of its device: browser, system and kind from the User-Agent, and
where its address is (GEOIP_DB, with the tests' own .mmdb), through the HTTP API."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import bearer, login
from tests.mmdb import write_mmdb

MakeApi = Callable[..., Awaitable[TestClient]]
ADMIN = "admin-" + "g" * 40
PROXY = (ipaddress.ip_network("127.0.0.1/32"),)

# (User-Agent, browser, os, device_type): real strings, as browsers and tools send them.
USER_AGENTS = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        "Chrome 120",
        "Windows 10",
        "desktop",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
        "Edge 120",
        "Windows 10",
        "desktop",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.4.1 Safari/605.1.15",
        "Safari 17",
        "macOS 10.15",
        "desktop",
    ),
    (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0",
        "Firefox 126",
        "Ubuntu",
        "desktop",
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/120.0.6099.28 Safari/537.36",
        "HeadlessChrome 120",
        "Linux",
        "desktop",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Safari 17",
        "iOS 17.5",
        "phone",
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36",
        "Chrome 124",
        "Android 14",
        "phone",
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        "Samsung Internet 23",
        "Android 13",
        "phone",
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Safari 17",
        "iOS 17.5",
        "tablet",
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        "Chrome 120",
        "Android 14",
        "tablet",
    ),
    ("curl/8.5.0", "curl 8", None, "terminal"),
    ("HTTPie/3.2.2", "HTTPie 3", None, "terminal"),
    ("Python/3.11 aiohttp/3.9.5", None, None, "terminal"),
    ("sessionwire/0.1.0 (Linux; Python 3.11)", "sessionwire 0.1", "Linux", "terminal"),
    ("Googlebot/2.1 (+http://www.google.com/bot.html)", "Googlebot 2", None, "unknown"),
    ("", None, None, "unknown"),
    ("\u00ff\u00fe ###garbage### ][", None, None, "unknown"),
]


@pytest.mark.parametrize(("agent", "browser", "system", "kind"), USER_AGENTS)
async def test_the_user_agent_says_browser_os_and_kind(
    api: TestClient, agent: str, browser: str | None, system: str | None, kind: str
) -> None:
    body = await login(api, user_agent=agent)
    session = body["session"]
    found = (session["browser"], session["os"], session["device_type"])
    if browser is None and kind == "terminal":  # a library: its name as ua-parser knows it
        found = (None, *found[1:])
    assert found == (browser, system, kind)
    listed = await (await api.get("/sessions", headers=bearer(body["token"]))).json()
    (view,) = [s for s in listed["sessions"] if s["session_id"] == session["session_id"]]
    assert (view["browser"], view["os"], view["device_type"]) == (
        session["browser"],
        session["os"],
        session["device_type"],
    )


LONDON = {
    "city": {"geoname_id": 2643743, "names": {"en": "London", "de": "London"}},
    "country": {"iso_code": "GB", "names": {"en": "United Kingdom", "fr": "Royaume-Uni"}},
    "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}],
    "location": {"latitude": 51.5142, "longitude": -0.0931},
}
BERLIN_V6 = {
    "city": {"names": {"en": "Berlin"}},
    "country": {"iso_code": "DE", "names": {"en": "Germany"}},
    "subdivisions": [{"names": {"en": "Land Berlin"}}],
}
IPINFO_LITE = {"country": "Japan", "country_code": "JP", "continent": "Asia", "asn": "AS2497"}


@pytest.fixture
def geoip_db(tmp_path: Path) -> Path:
    return write_mmdb(
        tmp_path / "city.mmdb",
        {"81.2.69.0/24": LONDON, "2a02:8100::/32": BERLIN_V6, "133.1.0.0/16": IPINFO_LITE},
    )


def where(country: str | None, code: str | None, region: str | None, city: str | None) -> Any:
    return {
        "country": country,
        "country_code": code,
        "region": region,
        "city": city,
        "this_network": False,
    }


THIS_NETWORK = {
    "country": None,
    "country_code": None,
    "region": None,
    "city": None,
    "this_network": True,
}
LOCATIONS = [
    ("81.2.69.142", where("United Kingdom", "GB", "England", "London")),
    ("2a02:8100:1234::5", where("Germany", "DE", "Land Berlin", "Berlin")),
    ("133.1.2.3", where("Japan", "JP", None, None)),
    ("8.8.8.8", None),  # public, but not in the database
    ("2001:4860:4860::8888", None),
    ("127.0.0.1", THIS_NETWORK),
    ("10.1.2.3", THIS_NETWORK),
    ("192.168.0.7", THIS_NETWORK),
    ("169.254.1.1", THIS_NETWORK),
    ("100.64.3.4", THIS_NETWORK),  # CGNAT
    ("fd12:3456::1", THIS_NETWORK),  # ULA
    ("fe80::1", THIS_NETWORK),
    ("::1", THIS_NETWORK),
    ("::ffff:192.168.1.1", THIS_NETWORK),
]


@pytest.mark.parametrize(("ip", "location"), LOCATIONS)
async def test_the_location_of_a_sign_in(
    make_api: MakeApi, geoip_db: Path, ip: str, location: Any
) -> None:
    api = await make_api(geoip_db=str(geoip_db), trusted_proxies=PROXY, admin_token=ADMIN)
    body = await login(api, headers={"X-Forwarded-For": ip})
    assert ipaddress.ip_address(body["session"]["ip"]) == ipaddress.ip_address(ip)
    assert body["session"]["location"] == location
    listed = await (await api.get("/sessions", headers=bearer(body["token"]))).json()
    assert listed["sessions"][0]["location"] == location
    me = await (await api.get("/me", headers=bearer(body["token"]))).json()
    assert me["session"]["location"] == location
    # The admin API's sessions are placed from the address the product gives.
    opened = await api.post(
        "/admin/sessions", json={"username": "carol", "ip": ip}, headers=bearer(ADMIN)
    )
    assert (await opened.json())["session"]["location"] == location


async def test_without_a_database_only_this_network_is_known(make_api: MakeApi) -> None:
    api = await make_api(trusted_proxies=PROXY)
    public = await login(api, headers={"X-Forwarded-For": "81.2.69.142"})
    assert public["session"]["location"] is None
    local = await login(api)
    assert local["session"]["location"] == THIS_NETWORK


@pytest.mark.parametrize("content", [b"", b"not a database", b"\xab\xcd\xefMaxMind.com\x00"])
async def test_an_unreadable_database_is_a_warning_not_an_error(
    make_api: MakeApi, tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="service.api.geoip"):
        api = await make_api(geoip_db=str(broken), trusted_proxies=PROXY)
    assert "unreadable" in caplog.text
    body = await login(api, headers={"X-Forwarded-For": "81.2.69.142"})
    assert body["session"]["location"] is None


async def test_a_missing_database_is_a_warning(
    make_api: MakeApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.api.geoip"):
        api = await make_api(geoip_db=str(tmp_path / "absent.mmdb"))
    assert "unreadable" in caplog.text
    assert (await login(api))["session"]["location"] == THIS_NETWORK
