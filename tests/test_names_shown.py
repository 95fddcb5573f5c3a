"""Device names are shown on other devices: nothing in one may be acted on instead of
shown (issue 16, finding 5). Someone with the password must not be able to erase the
"new sign-in" alert of a terminal, set its title, or reorder what a page shows.
"""

from __future__ import annotations

import asyncio
import re
import sys
import unicodedata
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from service.sessions import keys
from service.wire.names import NOT_SHOWN_CATEGORIES, SHOWN_PATTERN, escaped
from tests.conftest import PASSWORD, bearer, login
from tests.raw import raw_request
from tests.test_admin_api import ADMIN, ADMIN_TOKEN
from tests.test_api_input import problem
from tests.test_cli import line_with, terminals

MakeApi = Callable[..., Awaitable[TestClient]]

# What an attacker would put in a name: clear the screen and home the cursor, a carriage
# return over the line, a window title (OSC 0), C1's CSI, DEL, a right-to-left override,
# a zero-width space, the line and paragraph separators.
HOSTILE = [
    "\x1b[2J\x1b[Hlaptop",
    "phone\rlaptop",
    "\x1b]0;owned\x07laptop",
    "\x9b2Jlaptop",
    "lap\x7ftop",
    "laptop\u202egnp.exe",
    "lap\u200btop",
    "lap\u2028top",
    "lap\u2029top",
]
FINE = ["Anna's iPhone", "Büro-PC", "携帯電話", "laptop (2)", "tab\u0301let"]


def test_the_class_of_characters_not_shown_is_this_pythons_unicode() -> None:
    wrong = [
        f"U+{code:04X} ({unicodedata.category(chr(code))})"
        for code in range(sys.maxunicode + 1)
        if bool(re.fullmatch(SHOWN_PATTERN, chr(code)))
        == (unicodedata.category(chr(code)) in NOT_SHOWN_CATEGORIES)
    ]
    assert not wrong, (
        f"service/wire/names.py NOT_SHOWN_CLASS is not Unicode {unicodedata.unidata_version}'s "
        f"{sorted(NOT_SHOWN_CATEGORIES)}: regenerate it ({wrong[:5]})"
    )


def test_a_lone_surrogate_is_escaped_too() -> None:
    assert escaped("a\ud800b") == "a\\ud800b"  # json.loads lets one through


@pytest.mark.parametrize("name", HOSTILE)
async def test_login_refuses_a_device_name_that_is_not_all_shown(
    api: TestClient, name: str
) -> None:
    body = {"username": "alice", "password": PASSWORD, "device_name": name}
    problem_body = await problem(await api.post("/login", json=body), 422, "validation_error")
    assert problem_body["errors"][0]["field"] == "device_name"
    form = await api.post("/login", data=body)  # a form says the same
    assert (await problem(form, 422, "validation_error"))["errors"][0]["field"] == "device_name"
    signed_in = await login(api)
    listed = await (await api.get("/sessions", headers=bearer(signed_in["token"]))).json()
    assert [s["session_id"] for s in listed["sessions"]] == [signed_in["session"]["session_id"]]


@pytest.mark.parametrize("name", FINE)
async def test_names_in_any_script_are_welcome(api: TestClient, name: str) -> None:
    assert (await login(api, device_name=name))["session"]["device_name"] == name


@pytest.mark.parametrize("name", HOSTILE[:3] + HOSTILE[5:6])
async def test_the_admin_api_refuses_them_too(make_api: MakeApi, name: str) -> None:
    admin = await make_api(admin_token=ADMIN_TOKEN)
    body = {"username": "dave", "device_name": name}
    resp = await admin.post("/admin/sessions", json=body, headers=ADMIN)
    assert (await problem(resp, 422, "validation_error"))["errors"][0]["field"] == "device_name"


def android(model: str) -> str:
    """A phone's User-Agent, with `model` where the phone names itself (ua-parser takes
    the device's name from there)."""
    return (
        f"Mozilla/5.0 (Linux; Android 13; {model} Build/TQ3A) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"
    )


@pytest.mark.parametrize("model", ["\x1b[2J\x1b[HEvil", "\u202eEvil", "Ev\x9bil"])
async def test_a_name_made_from_the_user_agent_holds_only_what_is_shown(
    make_api: MakeApi, model: str
) -> None:
    admin = await make_api(admin_token=ADMIN_TOKEN)
    body = {"username": "dave", "user_agent": android(model)}
    resp = await admin.post("/admin/sessions", json=body, headers=ADMIN)
    assert resp.status == 200, await resp.text()  # the User-Agent is what it is: kept
    session = (await resp.json())["session"]
    assert session["user_agent"] == android(model)
    assert session["device_name"].startswith("Chrome on ") and "Evil" in session["device_name"]
    assert session["device_name"].isprintable(), session["device_name"]


async def test_a_user_agent_header_signs_in_with_a_name_of_what_is_shown(api: TestClient) -> None:
    assert api.server.port is not None
    body = b'{"username": "alice", "password": "%s"}' % PASSWORD.encode()
    json = {"Content-Type": b"application/json"}
    # aiohttp's parser refuses controls in a header value; other bytes it lets through.
    refused = {"User-Agent": android("\x1b[2JEvil").encode(), **json}
    assert (await raw_request(api.server.port, "POST", "/login", refused, body)).status == 400
    headers = {"User-Agent": android("\u202eEvil").encode(), **json}
    resp = await raw_request(api.server.port, "POST", "/login", headers, body)
    assert resp.status == 200, resp.body
    assert resp.json()["session"]["device_name"] == "Chrome on Evil"


# --- the terminal client shows what it is sent, never acts on it ---


async def test_the_terminal_client_escapes_what_the_server_sends(
    redis_url: str, tmp_path: Path, rdb: aioredis.Redis
) -> None:
    hostile = "\x1b[2J\x1b[H\x1b]0;owned\x07\u202eevil"
    with terminals(redis_url, tmp_path) as cli:
        await cli.login("laptop", "laptop")
        phone = await cli.login("phone", "phone")
        # A name stored before the API refused such names (or by another version of it).
        await rdb.hset(keys.session_record("alice", phone), "device_name", hostile)  # type: ignore[misc]
        listener = await cli.start("listen", "--profile", "laptop")
        await line_with(listener, "connected as alice")

        code, out = await cli.run("devices", "--profile", "laptop")
        assert code == 0
        assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
        assert "\\x1b[2J\\x1b[H\\x1b]0;owned\\x07\\u202eevil" in out

        # The hostile device signs the listener out: its name is in the notice.
        code, out = await cli.run("revoke-others", "--profile", "phone")
        assert code == 0, out
        line = await line_with(listener, "this device was signed out")
        assert "from \\x1b[2J\\x1b[H\\x1b]0;owned\\x07\\u202eevil (127.0.0.1)" in line
        assert await asyncio.wait_for(listener.wait(), 10) == 0
