"""The worker's pub/sub reader against a real Redis that is slow to answer, not gone."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import redis.asyncio as aioredis

from service.clock import SYSTEM_CLOCK
from service.engine.factory import engine_for
from tests.conftest import RedisServer
from workers import shard_reader
from workers.hub import Hub
from workers.metrics import Metrics
from workers.shard_reader import PING_DEADLINE, ShardReader

PAUSE = 1.0  # the node answers this late: many reads, half the ping's deadline
READ = 0.1  # a short read, so that a pong is almost always more than one read late
EVERY = PING_DEADLINE + 0.1  # pings as rare as the deadline allows (they are rarer still)
ROUNDS = 2  # pings answered late


async def test_a_pong_later_than_one_read_but_within_the_deadline_keeps_the_feed(
    own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shard_reader, "READ_TIMEOUT", READ)
    monkeypatch.setattr(shard_reader, "PING_EVERY", EVERY)
    client = aioredis.from_url(own_redis.url, decode_responses=True)
    engine = engine_for(client)
    lost: list[ShardReader] = []
    reader = ShardReader(
        engine.masters()[0],
        engine,
        Hub(Metrics(), SYSTEM_CLOCK),
        confirmed=lambda user: None,
        lost=lost.append,
        unreachable=lambda: None,
        moved=lambda users: None,
    )
    task = asyncio.create_task(reader.run())
    try:
        await asyncio.wait_for(reader.connected.wait(), 5)
        assert own_redis.proc is not None
        # The node answers everything up to PAUSE late (stopped, as a loaded machine
        # deschedules it), through ROUNDS heartbeat pings.
        for _ in range(int(ROUNDS * (EVERY + PAUSE) / PAUSE) + 1):
            os.kill(own_redis.proc.pid, signal.SIGSTOP)
            await asyncio.sleep(PAUSE)
            os.kill(own_redis.proc.pid, signal.SIGCONT)
            await asyncio.sleep(0.05)
        assert not lost, "a slow pong was taken for a node that hangs"
        assert reader.connected.is_set()
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=10)
        await client.aclose()
        assert done, "the reader did not stop when cancelled"
