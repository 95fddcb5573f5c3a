"""The embedded development Redis: redis-server when on PATH, else fakeredis."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis

from service.engine.devredis import answers, embedded_redis_if_needed
from tests.conftest import RedisServer, free_port, make_settings


def ping(port: int) -> bool:
    with redis.Redis(port=port, socket_connect_timeout=1) as client:
        return bool(client.ping())


def test_answers(redis_server: RedisServer) -> None:
    assert answers("127.0.0.1", redis_server.port)
    assert not answers("127.0.0.1", free_port())


def test_nothing_is_started_when_redis_url_is_set(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    settings = make_settings("redis://127.0.0.1:1/0", dev_redis_port=port)
    with caplog.at_level(logging.WARNING), embedded_redis_if_needed(settings):
        assert not answers("127.0.0.1", port)
    assert "embedded" not in caplog.text


def test_nothing_is_started_when_one_answers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings("", dev_redis_port=redis_server.port)
    with caplog.at_level(logging.WARNING), embedded_redis_if_needed(settings):
        assert ping(redis_server.port)
    assert "embedded" not in caplog.text
    assert answers("127.0.0.1", redis_server.port)  # not ours to stop


def test_starts_redis_server(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    settings = make_settings("", dev_redis_port=port)
    with caplog.at_level(logging.WARNING), embedded_redis_if_needed(settings):
        assert ping(port)
    assert "started an embedded redis-server" in caplog.text
    assert not answers("127.0.0.1", port)


def test_falls_back_to_fakeredis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server here
    port = free_port()
    settings = make_settings("", dev_redis_port=port)
    with (
        caplog.at_level(logging.WARNING),
        embedded_redis_if_needed(settings),
        redis.Redis(port=port, decode_responses=True) as client,
    ):
        client.set("k", "v")
        assert client.get("k") == "v"
        assert client.eval("return redis.call('GET', KEYS[1])", 1, "k") == "v"
    assert "fakeredis" in caplog.text
    assert not answers("127.0.0.1", port)
