"""Each event's frames are encoded once, however many sockets (and arrivals) it has."""

from __future__ import annotations

import pytest

from service.sessions.records import Event, StoredSession
from workers import frames
from workers.frames import FrameCache


def event(event_id: str, user: str = "alice") -> Event:
    return Event(
        id=event_id,
        type="session.revoked",
        user=user,
        session_id="s1",
        at=1_700_000_000_000,
        reason="revoked",
        session=StoredSession(session_id="s1", device_name="phone"),
    )


def test_an_event_is_encoded_once_for_every_socket_and_arrival(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded: list[object] = []
    real = frames.encode
    monkeypatch.setattr(frames, "encode", lambda m: encoded.append(m) or real(m))
    cache = FrameCache()
    live, replayed = event("1-0"), event("1-0")  # by pub/sub, and again from the log
    found = [cache.of(live) for _ in range(10)] + [cache.of(replayed) for _ in range(10)]
    assert len({id(f.changed) for f in found}) == 1
    assert len({id(f.revoked) for f in found}) == 1
    assert len(encoded) == 2  # one sessions.changed, one session.revoked


def test_the_cache_keeps_the_newest_events_only() -> None:
    cache = FrameCache(size=2)
    first = cache.of(event("1-0"))
    cache.of(event("2-0"))
    cache.of(event("3-0"))
    assert cache.of(event("1-0")) is not first
    assert cache.of(event("1-0", user="bob")) is not cache.of(event("1-0"))
