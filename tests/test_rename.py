"""PATCH /sessions/{id} and its admin twin: a device gets a name its user can tell apart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import ENGINES, EventWatch, bearer, login, on_engine

Watch = Callable[[str], EventWatch]
ADMIN = "admin-token-for-tests-0123456789abcdef"


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


async def rename(
    api: TestClient, token: str, session_id: str, body: Any, status: int = 200
) -> dict[str, Any]:
    resp = await api.patch(f"/sessions/{session_id}", json=body, headers=bearer(token))
    answer = await resp.json(content_type=None)
    assert resp.status == status, answer
    return answer  # type: ignore[no-any-return]


async def test_rename_another_device(api: TestClient, watch_events: Watch) -> None:
    laptop = await login(api, device_name="Laptop")
    phone = await login(api, device_name="Phone")
    sid = phone["session"]["session_id"]
    async with watch_events("alice") as events:
        view = await rename(api, laptop["token"], sid, {"device_name": "Anna's phone"})
        (event,) = await events.take()
    assert view["device_name"] == "Anna's phone"
    assert view["session_id"] == sid and view["current"] is False
    assert event["type"] == "session.renamed"
    assert event["session"]["device_name"] == "Anna's phone"
    assert event["by"]["session_id"] == laptop["session"]["session_id"]
    listed = (await (await api.get("/sessions", headers=bearer(laptop["token"]))).json())[
        "sessions"
    ]
    assert {s["session_id"]: s["device_name"] for s in listed}[sid] == "Anna's phone"
    me = await (await api.get("/me", headers=bearer(phone["token"]))).json()
    assert me["session"]["device_name"] == "Anna's phone"
    activity = await (await api.get("/activity", headers=bearer(phone["token"]))).json()
    assert activity["events"][0]["type"] == "session.renamed"
    assert activity["events"][0]["session"]["device_name"] == "Anna's phone"


async def test_the_same_name_again_changes_and_logs_nothing(api: TestClient) -> None:
    mine = await login(api, device_name="Laptop")
    sid = mine["session"]["session_id"]
    for _ in range(3):
        view = await rename(api, mine["token"], sid, {"device_name": "Laptop"})
        assert view["device_name"] == "Laptop"
    activity = await (await api.get("/activity", headers=bearer(mine["token"]))).json()
    assert [e["type"] for e in activity["events"]] == ["session.created"]


async def test_rename_this_device(api: TestClient) -> None:
    mine = await login(api)
    sid = mine["session"]["session_id"]
    view = await rename(api, mine["token"], sid, {"device_name": "Work laptop"})
    assert (view["device_name"], view["current"]) == ("Work laptop", True)


@pytest.mark.parametrize(
    "name",
    ["", "x" * 101, "evil\x1b[31m", "line\nbreak", "bidi\u202eoverride", "zero\u200bwidth"],
)
async def test_a_bad_name_is_a_422_naming_the_field(api: TestClient, name: str) -> None:
    mine = await login(api, device_name="Kept")
    sid = mine["session"]["session_id"]
    problem = await rename(api, mine["token"], sid, {"device_name": name}, 422)
    assert problem["code"] == "validation_error"
    assert [e["field"] for e in problem["errors"]] == ["device_name"]
    me = await (await api.get("/me", headers=bearer(mine["token"]))).json()
    assert me["session"]["device_name"] == "Kept"


@pytest.mark.parametrize("body", [{}, {"device_name": 5}, [], "name"])
async def test_a_malformed_body_is_a_4xx(api: TestClient, body: Any) -> None:
    mine = await login(api)
    resp = await api.patch(
        f"/sessions/{mine['session']['session_id']}", json=body, headers=bearer(mine["token"])
    )
    assert resp.status in (400, 422)


async def test_another_users_session_is_404(api: TestClient, watch_events: Watch) -> None:
    bob = await login(api, "bob", device_name="Bob's")
    alice = await login(api)
    async with watch_events("bob") as events:
        problem = await rename(
            api, alice["token"], bob["session"]["session_id"], {"device_name": "Mine now"}, 404
        )
        assert await events.take() == []
    assert problem["code"] == "session_not_found"
    me = await (await api.get("/me", headers=bearer(bob["token"]))).json()
    assert me["session"]["device_name"] == "Bob's"
    missing = await rename(api, alice["token"], "no-such-session", {"device_name": "x"}, 404)
    assert missing["code"] == "session_not_found"


async def test_a_revoked_session_cannot_be_renamed(api: TestClient) -> None:
    mine = await login(api)
    other = await login(api)
    sid = other["session"]["session_id"]
    await api.delete(f"/sessions/{sid}", headers=bearer(mine["token"]))
    await rename(api, mine["token"], sid, {"device_name": "Ghost"}, 404)


async def test_no_token_is_401(api: TestClient) -> None:
    resp = await api.patch("/sessions/abc", json={"device_name": "x"})
    assert resp.status == 401


async def test_admin_renames_a_users_session(
    make_api: Callable[..., Any], watch_events: Watch
) -> None:
    api = await make_api(admin_token=ADMIN)
    alice = await login(api)
    sid = alice["session"]["session_id"]
    path = f"/admin/users/alice/sessions/{sid}"
    async with watch_events("alice") as events:
        resp = await api.patch(path, json={"device_name": "Kiosk 3"}, headers=bearer(ADMIN))
        (event,) = await events.take()
    body = await resp.json()
    assert resp.status == 200, body
    assert body["device_name"] == "Kiosk 3" and "current" not in body
    assert event["type"] == "session.renamed" and event["by"] is None
    bad = await api.patch(path, json={"device_name": "a\x07b"}, headers=bearer(ADMIN))
    assert bad.status == 422
    gone = await api.patch(
        "/admin/users/bob/sessions/" + sid, json={"device_name": "x"}, headers=bearer(ADMIN)
    )
    assert (gone.status, (await gone.json())["code"]) == (404, "session_not_found")
    refused = await api.patch(path, json={"device_name": "x"}, headers=bearer("wrong"))
    assert refused.status == 401
