"""The read batcher against a real Redis: who gets which reply, and what a failure touches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from service.engine.batcher import ReadBatcher
from service.engine.connect import single_client
from service.engine.factory import engine_for
from tests.conftest import RedisServer


def key(n: int | str) -> str:
    return f"sw:{{u:user{n}}}:s:x"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    conn = single_client(redis_url)
    for n in range(300):
        await conn.hset(key(n), mapping={"n": str(n)})
    yield conn
    await conn.aclose()


async def test_concurrent_reads_share_one_batch_and_each_gets_its_own_reply(
    client: aioredis.Redis,
) -> None:
    batcher = ReadBatcher(engine_for(client))
    replies = await asyncio.gather(*(batcher.execute("HGETALL", key(n)) for n in range(50)))
    assert [reply["n"] for reply in replies] == [str(n) for n in range(50)]
    assert batcher.batches_sent == 1


async def test_a_lone_read_is_sent_at_once(client: aioredis.Redis) -> None:
    batcher = ReadBatcher(engine_for(client))
    assert await asyncio.wait_for(batcher.execute("HGETALL", key(7)), 1) == {"n": "7"}


async def test_batches_are_bounded(client: aioredis.Redis) -> None:
    batcher = ReadBatcher(engine_for(client), max_batch=100)
    replies = await asyncio.gather(*(batcher.execute("HGETALL", key(n)) for n in range(250)))
    assert [reply["n"] for reply in replies] == [str(n) for n in range(250)]
    assert batcher.batches_sent == 3


async def test_batches_out_at_once_are_bounded_and_the_rest_gather(
    client: aioredis.Redis,
) -> None:
    batcher = ReadBatcher(engine_for(client), max_in_flight=1)
    first = asyncio.create_task(batcher.execute("HGETALL", key(0)))
    later = []
    for n in range(1, 51):  # one read a turn, while the first batch is out
        await asyncio.sleep(0)
        later.append(asyncio.create_task(batcher.execute("HGETALL", key(n))))
    replies = await asyncio.gather(first, *later)
    assert [reply["n"] for reply in replies] == [str(n) for n in range(51)]
    assert batcher.batches_sent < 51 // 3  # not one a turn: they gathered behind the one out


async def test_an_error_reply_reaches_only_its_request(client: aioredis.Redis) -> None:
    batcher = ReadBatcher(engine_for(client))
    await client.set(key("odd"), "not a hash")
    good, bad = await asyncio.gather(
        batcher.execute("HGETALL", key(1)),
        batcher.execute("HGETALL", key("odd")),
        return_exceptions=True,
    )
    assert good == {"n": "1"}
    assert isinstance(bad, Exception) and "WRONGTYPE" in str(bad)
    assert await batcher.execute("HGETALL", key(2)) == {"n": "2"}  # the connection is fine


async def test_a_failed_batch_fails_its_requests_only(own_redis: RedisServer) -> None:
    client = single_client(own_redis.url)
    try:
        await client.hset(key(0), mapping={"n": "0"})
        batcher = ReadBatcher(engine_for(client))
        own_redis.stop()
        first = await asyncio.gather(
            *(batcher.execute("HGETALL", key(n)) for n in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RedisConnectionError) for r in first)
        own_redis.start()  # empty: it kept no data
        second = await asyncio.gather(*(batcher.execute("HGETALL", key(n)) for n in range(3)))
        assert second == [{}, {}, {}]
    finally:
        await client.aclose()


async def test_a_restarted_redis_costs_no_request_an_error(own_redis: RedisServer) -> None:
    client = single_client(own_redis.url)
    try:
        batcher = ReadBatcher(engine_for(client))
        assert await batcher.execute("HGETALL", key(1)) == {}  # a pooled connection now
        own_redis.stop()
        own_redis.start()
        assert await batcher.execute("HGETALL", key(1)) == {}  # sent again on a new one
    finally:
        await client.aclose()


async def test_a_request_cancelled_while_waiting_leaves_the_others_their_replies(
    client: aioredis.Redis,
) -> None:
    batcher = ReadBatcher(engine_for(client))
    waiting = [asyncio.create_task(batcher.execute("HGETALL", key(n))) for n in range(5)]
    await asyncio.sleep(0)  # all five are queued
    waiting[2].cancel()
    done = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(done[2], asyncio.CancelledError)
    assert [done[n]["n"] for n in (0, 1, 3, 4)] == ["0", "1", "3", "4"]  # type: ignore[index]
    await batcher.close()


async def test_reads_of_many_users_and_kinds_mix_in_one_batch(client: aioredis.Redis) -> None:
    await client.xadd("sw:{u:user3}:log", {"e": "{}"})
    batcher = ReadBatcher(engine_for(client))
    record, log, missing = await asyncio.gather(
        batcher.execute("HGETALL", key(2)),
        batcher.execute("XREVRANGE", "sw:{u:user3}:log", "+", "-", "COUNT", 1),
        batcher.execute("HGETALL", key("nobody")),
    )
    assert record == {"n": "2"} and len(log) == 1 and missing == {}
    assert batcher.batches_sent == 1


async def test_reads_sent_together_are_never_split_and_keep_their_order(
    client: aioredis.Redis,
) -> None:
    """However the batch is cut, a group leaves whole, in one pipeline, in order."""
    batcher = ReadBatcher(engine_for(client), max_batch=3, max_in_flight=1)
    singles = [batcher.execute("HGET", key(n), "n") for n in range(5)]
    pairs = [
        batcher.execute_together(("HGET", key(n), "n"), ("EXISTS", key(n))) for n in range(5, 12)
    ]
    replies = await asyncio.gather(*singles, *pairs)
    assert replies[:5] == [str(n) for n in range(5)]
    assert replies[5:] == [[str(n), 1] for n in range(5, 12)]
    assert batcher.batches_sent == 4  # 12 entries, 3 to a pipeline: pairs count as one


async def test_an_error_answered_to_one_of_a_group_fails_that_group_only(
    client: aioredis.Redis,
) -> None:
    batcher = ReadBatcher(engine_for(client))
    group = batcher.execute_together(("HGET", key(1), "n"), ("LLEN", key(1)))  # a hash
    alone = batcher.execute("HGET", key(2), "n")
    results = await asyncio.gather(group, alone, return_exceptions=True)
    assert "WRONGTYPE" in str(results[0])
    assert results[1] == "2"
