"""The session data layer on fakeredis: fast checks of each script's rules."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis

from service.sessions import eventlog, keys, store
from service.sessions.records import StoredSession, event_decoder
from service.sessions.store import GRACE_MS, SessionGone, SessionStore, SessionTooNew
from service.wire.schemas import Actor
from tests.conftest import ManualClock as Clock
from tests.conftest import make_settings

ALICE_PHONE = Actor(session_id="by-sid", device_name="Phone", ip="10.0.0.1")


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    conn = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    yield conn
    await conn.aclose()


@pytest.fixture
def make_store(client: aioredis.Redis, clock: Clock) -> Callable[..., SessionStore]:
    def make(**overrides: object) -> SessionStore:
        return SessionStore(client, make_settings("redis://unused", **overrides), clock)

    return make


async def create(
    s: SessionStore, sid: str, device_id: str = "", user: str = "alice"
) -> StoredSession:
    session, _ = await s.create(
        user,
        session_id=sid,
        device_id=device_id,
        device_name=f"dev {sid}",
        user_agent="ua",
        ip="127.0.0.1",
    )
    return session


async def events(client: aioredis.Redis, user: str = "alice") -> list[dict[str, Any]]:
    return [json.loads(f["e"]) for _, f in await client.xrange(keys.event_log(user))]


async def test_create_stores_and_logs(
    make_store: Callable[..., SessionStore], client: aioredis.Redis, clock: Clock
) -> None:
    s = make_store(session_idle_timeout=60, session_max_age=600)
    session, revoked = await s.create(
        "alice", session_id="s1", device_id="d1", device_name="Phone", user_agent="ua", ip="1.2.3.4"
    )
    assert revoked == []
    assert session.session_id == "s1"
    assert (session.created_ms, session.seen_ms) == (clock.now, clock.now)
    assert session.max_ms == clock.now + 600_000
    assert session.deadline_ms == clock.now + 60_000
    wire = session.to_wire()
    assert wire.device_id == "d1"
    assert wire.expires_at.timestamp() * 1000 == clock.now + 60_000
    assert await client.zscore(keys.session_index("alice"), "s1") == clock.now
    assert await client.hget(keys.device_index("alice"), "d1") == "s1"
    due = await client.zscore(keys.due_index_of("alice"), keys.due_member("alice", "s1"))
    assert due == clock.now + 60_000
    (event,) = await events(client)
    assert event["type"] == "session.created"
    assert event["by"] == {"session_id": "s1", "device_name": "Phone", "ip": "1.2.3.4"}
    # every key of the user is on the user's hash tag
    for key in await client.keys("sw:{u:alice}*"):
        assert key.startswith(keys.user_prefix("alice"))


async def test_check_touches_at_most_once_per_interval(
    make_store: Callable[..., SessionStore], client: aioredis.Redis, clock: Clock
) -> None:
    s = make_store(session_touch_interval=60)
    created = await create(s, "s1")
    clock.now += 30_000
    assert (await s.check("alice", "s1")).seen_ms == created.seen_ms
    assert await client.zscore(keys.session_index("alice"), "s1") == created.seen_ms
    clock.now += 31_000
    touched = await s.check("alice", "s1")
    assert touched.seen_ms == clock.now
    assert await client.zscore(keys.session_index("alice"), "s1") == clock.now
    assert int(await client.hget(keys.session_record("alice", "s1"), "seen_ms")) == clock.now


async def test_check_of_an_unknown_session(make_store: Callable[..., SessionStore]) -> None:
    with pytest.raises(SessionGone) as gone:
        await make_store().check("alice", "nope")
    assert gone.value.tombstone is None


async def test_revoke_one_leaves_a_tombstone(
    make_store: Callable[..., SessionStore], client: aioredis.Redis, clock: Clock
) -> None:
    s = make_store(session_max_age=600)
    await create(s, "s1", device_id="d1")
    await create(s, "s2")
    assert await s.revoke("alice", "one", "s1", "revoked", ALICE_PHONE) == ["s1"]
    assert await s.revoke("alice", "one", "s1", "revoked", ALICE_PHONE) == []
    with pytest.raises(SessionGone) as gone:
        await s.check("alice", "s1")
    tomb = gone.value.tombstone
    assert tomb is not None
    assert (tomb.reason, tomb.at, tomb.by) == ("revoked", clock.now, ALICE_PHONE)
    assert tomb.to_wire().reason == "revoked"
    ttl = await client.pttl(keys.tombstone("alice", "s1"))
    assert 600_000 < ttl <= 600_000 + GRACE_MS + 1000  # until the token would have expired
    assert not await client.exists(keys.session_record("alice", "s1"))
    assert await client.hget(keys.device_index("alice"), "d1") is None
    assert [x.session_id for x in await s.list("alice")] == ["s2"]
    assert [e["reason"] for e in await events(client)] == [None, None, "revoked"]


async def test_revoke_others_and_all(make_store: Callable[..., SessionStore]) -> None:
    s = make_store()
    for sid in ("s1", "s2", "s3"):
        await create(s, sid)
    assert sorted(await s.revoke("alice", "others", "s2", "revoke_others", None)) == ["s1", "s3"]
    assert [x.session_id for x in await s.list("alice")] == ["s2"]
    await create(s, "s4")
    assert sorted(await s.revoke("alice", "all", "s2", "logout_all", None)) == ["s2", "s4"]
    assert await s.list("alice") == []


async def test_users_are_apart(make_store: Callable[..., SessionStore]) -> None:
    s = make_store()
    await create(s, "s1", user="alice")
    await create(s, "s2", user="bob")
    assert await s.revoke("alice", "one", "s2", "revoked", None) == []
    assert await s.revoke("alice", "all", "s1", "logout_all", None) == ["s1"]
    assert (await s.check("bob", "s2")).session_id == "s2"


async def test_same_device_id_replaces(
    make_store: Callable[..., SessionStore], client: aioredis.Redis
) -> None:
    s = make_store()
    await create(s, "s1", device_id="phone")
    _, revoked = await s.create(
        "alice", session_id="s2", device_id="phone", device_name="P", user_agent="", ip=""
    )
    assert revoked == ["s1"]
    assert (await s.tombstone("alice", "s1")).reason == "replaced"  # type: ignore[union-attr]
    assert await client.hgetall(keys.device_index("alice")) == {"phone": "s2"}


async def test_the_least_recently_seen_is_evicted(
    make_store: Callable[..., SessionStore], clock: Clock
) -> None:
    s = make_store(max_sessions_per_user=2, session_touch_interval=0)
    await create(s, "s1")
    clock.now += 1
    await create(s, "s2")
    clock.now += 1
    await s.check("alice", "s1")
    clock.now += 1
    _, revoked = await s.create(
        "alice", session_id="s3", device_id="", device_name="", user_agent="", ip=""
    )
    assert revoked == ["s2"]
    tomb = await s.tombstone("alice", "s2")
    assert tomb is not None and tomb.reason == "evicted"
    assert tomb.by is not None and tomb.by.session_id == "s3"
    assert [x.session_id for x in await s.list("alice")] == ["s3", "s1"]


async def test_idle_and_max_age_deadlines(
    make_store: Callable[..., SessionStore], client: aioredis.Redis, clock: Clock
) -> None:
    s = make_store(session_idle_timeout=10, session_max_age=25, session_touch_interval=0)
    await create(s, "s1")
    for _ in range(2):
        clock.now += 9_000
        await s.check("alice", "s1")  # activity moves the idle deadline on
    clock.now += 9_000  # 27 s: past the maximum age though active
    with pytest.raises(SessionGone) as gone:
        await s.check("alice", "s1")
    assert gone.value.tombstone is not None and gone.value.tombstone.reason == "expired"
    assert gone.value.tombstone.by is None
    assert (await events(client))[-1]["reason"] == "expired"


async def test_expire_sweeps_only_what_is_due(
    make_store: Callable[..., SessionStore], clock: Clock
) -> None:
    s = make_store(session_idle_timeout=10, session_touch_interval=0)
    await create(s, "s1")
    clock.now += 6_000
    await create(s, "s2")
    assert await s.expire("alice", "s1") == ([], clock.now + 4_000)
    clock.now += 5_000
    revoked, deadline = await s.expire("alice", "s1")
    assert revoked == ["s1"]
    assert deadline is None
    assert [x.session_id for x in await s.list("alice")] == ["s2"]


async def test_list_skips_sessions_past_their_deadline(
    make_store: Callable[..., SessionStore], clock: Clock
) -> None:
    s = make_store(session_idle_timeout=10)
    await create(s, "s1")
    clock.now += 10_000
    assert await s.list("alice") == []


async def test_a_corrupt_tombstone_is_no_tombstone(
    make_store: Callable[..., SessionStore], client: aioredis.Redis
) -> None:
    s = make_store()
    await client.set(keys.tombstone("alice", "s9"), "{not json")
    with pytest.raises(SessionGone) as gone:
        await s.check("alice", "s9")
    assert gone.value.tombstone is None
    await client.set(keys.tombstone("alice", "s9"), '{"reason": 5}')
    assert await s.tombstone("alice", "s9") is None


async def test_events_are_published_as_logged(
    make_store: Callable[..., SessionStore], client: aioredis.Redis
) -> None:
    s = make_store()
    pubsub = client.pubsub()
    await pubsub.ssubscribe(keys.channel("alice"))
    confirm = await pubsub.get_message(timeout=1)
    assert confirm is not None and confirm["type"] == "ssubscribe"
    await create(s, "s1")
    await s.revoke("alice", "one", "s1", "logout", ALICE_PHONE)
    logged = await client.xrange(keys.event_log("alice"))
    for entry_id, fields in logged:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        assert message is not None
        published = event_decoder.decode(message["data"])
        assert published.id == entry_id
        assert published == eventlog.decode_entry(entry_id, fields)
        assert json.loads(message["data"]) == {**json.loads(fields["e"]), "id": entry_id}
    assert keys.username_from_channel(keys.channel("alice")) == "alice"
    assert keys.username_from_channel("sw:{u:alice}:log") is None
    await pubsub.aclose()


async def test_the_event_log_is_capped(
    make_store: Callable[..., SessionStore], client: aioredis.Redis
) -> None:
    s = make_store(max_sessions_per_user=1)
    for i in range(300):  # each evicts the one before: 599 events
        await create(s, f"s{i}")
    length = await client.xlen(keys.event_log("alice"))
    assert store.EVENT_LOG_LENGTH <= length < store.EVENT_LOG_LENGTH + 100


async def test_a_replaced_device_makes_room_without_evicting(
    make_store: Callable[..., SessionStore], clock: Clock
) -> None:
    s = make_store(max_sessions_per_user=2)
    await create(s, "s1", device_id="phone")
    clock.now += 1
    await create(s, "s2", device_id="laptop")
    clock.now += 1
    _, revoked = await s.create(
        "alice", session_id="s3", device_id="phone", device_name="", user_agent="", ip=""
    )
    assert revoked == ["s1"]
    assert sorted(x.session_id for x in await s.list("alice")) == ["s2", "s3"]


async def test_tombstones_are_capped_per_user_oldest_first(
    make_store: Callable[..., SessionStore], client: aioredis.Redis, clock: Clock
) -> None:
    s = make_store(max_tombstones_per_user=3)
    for n in range(5):
        await create(s, f"s{n}")
        clock.advance(1)
        assert await s.revoke("alice", "one", f"s{n}", "logout", None) == [f"s{n}"]
    assert await client.zrange(keys.tombstone_index("alice"), 0, -1) == ["s2", "s3", "s4"]
    assert await s.tombstone("alice", "s1") is None  # the reason is forgotten ...
    with pytest.raises(SessionGone):  # ... but the session stays ended
        await s.check("alice", "s1")
    assert (await s.tombstone("alice", "s4")).reason == "logout"  # type: ignore[union-attr]


async def test_ended_sessions_leave_the_due_index_at_once(
    make_store: Callable[..., SessionStore], client: aioredis.Redis, clock: Clock
) -> None:
    s = make_store(max_sessions_per_user=2, session_idle_timeout=60)
    due = keys.due_index_of("alice")
    for n in range(50):  # sign in and out, again and again
        await create(s, f"s{n}")
        await s.revoke("alice", "one", f"s{n}", "logout", None)
    assert await client.zcard(due) == 0
    for n in range(5):  # evicted and replaced sessions leave too
        await create(s, f"e{n}", device_id="phone" if n % 2 else "")
    assert await client.zcard(due) == len(await s.list("alice")) == 2
    clock.advance(60)
    await s.expire("alice", "e4")
    assert await client.zcard(due) == 0


async def test_a_users_keys_expire_once_nothing_lives(
    make_store: Callable[..., SessionStore], client: aioredis.Redis
) -> None:
    s = make_store(session_max_age=600)
    await create(s, "s1")
    await s.revoke("alice", "one", "s1", "logout", None)
    for key in (keys.event_log("alice"), keys.tombstone_index("alice")):
        assert 0 < await client.pttl(key) <= (600 + GRACE_MS // 1000) * 1000
    assert not await client.exists(keys.session_index("alice"), keys.device_index("alice"))


async def test_the_fresh_session_guard_is_judged_by_the_revoke_itself(
    make_store: Callable[..., SessionStore], clock: Clock
) -> None:
    s = make_store(fresh_session_guard=60)
    await create(s, "old")
    clock.advance(10)
    new = await create(s, "new")
    by_new = new.as_actor()
    with pytest.raises(SessionTooNew) as held:
        await s.revoke("alice", "others", "new", "revoke_others", by_new)
    assert held.value.retry_after == 60
    assert await s.revoke("alice", "one", "new", "logout", by_new) == ["new"]
    # A device asking under the guard must still be signed in: its age is what is judged.
    with pytest.raises(SessionGone):
        await s.revoke("alice", "all", "new", "logout_all", by_new)
    assert [x.session_id for x in await s.list("alice")] == ["old"]
    # Without a device asking (the admin API, a password change) nothing is held back.
    assert await s.revoke("alice", "all", "", "admin", None) == ["old"]
