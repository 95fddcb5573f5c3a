"""The read batcher on fakeredis: who gets which reply, and what a failure touches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from service.coalesce import ReadBatcher


class CountingRedis(fakeredis.FakeAsyncRedis):
    """fakeredis that counts the pipelines it was asked for, and can fail the next ones."""

    pipelines = 0
    fail_next = 0

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        CountingRedis.pipelines += 1
        pipe = super().pipeline(*args, **kwargs)
        if CountingRedis.fail_next:
            CountingRedis.fail_next -= 1

            async def broken(raise_on_error: bool = True) -> list[Any]:
                raise RedisConnectionError("connection lost")

            pipe.execute = broken  # type: ignore[method-assign]
        return pipe


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    CountingRedis.pipelines, CountingRedis.fail_next = 0, 0
    conn = CountingRedis(server=fakeredis.FakeServer(), decode_responses=True)
    for n in range(300):
        await conn.hset(f"sw:{{u:user{n}}}:s:x", mapping={"n": str(n)})
    yield conn
    await conn.aclose()


async def test_concurrent_reads_share_one_pipeline_and_each_gets_its_own_reply(
    client: aioredis.Redis,
) -> None:
    batcher = ReadBatcher(client)
    keys = [f"sw:{{u:user{n}}}:s:x" for n in range(50)]
    replies = await asyncio.gather(*(batcher.execute("HGETALL", key) for key in keys))
    assert [reply["n"] for reply in replies] == [str(n) for n in range(50)]
    assert CountingRedis.pipelines == 1


async def test_a_lone_read_is_sent_at_once(client: aioredis.Redis) -> None:
    batcher = ReadBatcher(client)
    assert await asyncio.wait_for(batcher.execute("HGETALL", "sw:{u:user7}:s:x"), 1) == {"n": "7"}


async def test_batches_are_bounded(client: aioredis.Redis) -> None:
    batcher = ReadBatcher(client, max_batch=100)
    keys = [f"sw:{{u:user{n}}}:s:x" for n in range(250)]
    replies = await asyncio.gather(*(batcher.execute("HGETALL", key) for key in keys))
    assert [reply["n"] for reply in replies] == [str(n) for n in range(250)]
    assert CountingRedis.pipelines == 3


async def test_an_error_reply_reaches_only_its_request(client: aioredis.Redis) -> None:
    batcher = ReadBatcher(client)
    await client.set("sw:{u:odd}:s:x", "not a hash")
    good, bad = await asyncio.gather(
        batcher.execute("HGETALL", "sw:{u:user1}:s:x"),
        batcher.execute("HGETALL", "sw:{u:odd}:s:x"),
        return_exceptions=True,
    )
    assert good == {"n": "1"}
    assert isinstance(bad, Exception) and "WRONGTYPE" in str(bad)


async def test_a_failed_batch_fails_its_requests_only(client: aioredis.Redis) -> None:
    batcher = ReadBatcher(client)
    CountingRedis.fail_next = 1
    first = await asyncio.gather(
        *(batcher.execute("HGETALL", f"sw:{{u:user{n}}}:s:x") for n in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(r, RedisConnectionError) for r in first)
    second = await asyncio.gather(
        *(batcher.execute("HGETALL", f"sw:{{u:user{n}}}:s:x") for n in range(3))
    )
    assert [r["n"] for r in second] == ["0", "1", "2"]


async def test_a_request_cancelled_while_waiting_leaves_the_others_their_replies(
    client: aioredis.Redis,
) -> None:
    batcher = ReadBatcher(client)
    waiting = [
        asyncio.create_task(batcher.execute("HGETALL", f"sw:{{u:user{n}}}:s:x")) for n in range(5)
    ]
    await asyncio.sleep(0)  # all five are queued
    waiting[2].cancel()
    done = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(done[2], asyncio.CancelledError)
    assert [done[n]["n"] for n in (0, 1, 3, 4)] == ["0", "1", "3", "4"]  # type: ignore[index]
    await batcher.close()


async def test_reads_of_many_users_and_kinds_mix_in_one_batch(client: aioredis.Redis) -> None:
    await client.xadd("sw:{u:user3}:log", {"e": "{}"})
    batcher = ReadBatcher(client)
    record, log, missing = await asyncio.gather(
        batcher.execute("HGETALL", "sw:{u:user2}:s:x"),
        batcher.execute("XREVRANGE", "sw:{u:user3}:log", "+", "-", "COUNT", 1),
        batcher.execute("HGETALL", "sw:{u:nobody}:s:x"),
    )
    assert record == {"n": "2"} and len(log) == 1 and missing == {}
    assert CountingRedis.pipelines == 1
