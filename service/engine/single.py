"""One Redis server: the degenerate engine, one master that owns every slot."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from typing import Any

import redis.asyncio as redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.engine.base import Command, Engine, Node

SUBSCRIBE_CHUNK = 500  # channels per SSUBSCRIBE


class SingleEngine(Engine):
    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.server = client
        self.pool = client.connection_pool
        kwargs = self.pool.connection_kwargs
        if "path" in kwargs:
            self.node = Node(str(kwargs["path"]))
        else:
            self.node = Node(f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}")

    def masters(self) -> list[Node]:
        return [self.node]

    def node_of(self, key: str) -> Node:
        return self.node

    def group(self, channels: Iterable[str]) -> list[list[str]]:
        names = list(channels)
        return [names[i : i + SUBSCRIBE_CHUNK] for i in range(0, len(names), SUBSCRIBE_CHUNK)]

    def pubsub_connection(self, node: Node) -> AbstractConnection:
        return self.pool.connection_class(**{**self.pool.connection_kwargs, "protocol": 2})

    async def run_on(
        self, node: Node, commands: list[Command], *, repeatable: bool = False
    ) -> list[Any]:
        """On a connection borrowed from the client's pool: one checkout, one write, the
        replies, and none of redis-py's pipeline machinery (a command stack, a retry
        wrapper, response callbacks). A broken connection is dropped and the commands sent
        once more on another when they are repeatable, or when the first write itself
        failed (nothing was sent): a Redis that restarted then costs no request an error."""
        try:
            return await self._run_once(commands)
        except _NotSent as failed:
            error: Exception = failed.error
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if not repeatable:
                raise
            error = exc
        try:
            return await self._run_once(commands)
        except _NotSent as failed:
            raise failed.error from error

    async def _run_once(self, commands: list[Command]) -> list[Any]:
        conn = await self.pool.get_connection()
        try:
            try:
                await conn.send_packed_command(conn.pack_commands(commands))
            except (RedisConnectionError, RedisTimeoutError) as exc:
                raise _NotSent(exc) from exc
            # One deadline for the batch: redis-py arms a timer per reply otherwise.
            try:
                async with asyncio.timeout(conn.socket_timeout):
                    return [await _reply(conn) for _ in commands]
            except TimeoutError:
                raise RedisTimeoutError(f"Timeout reading from {self.node.name}") from None
        except BaseException:
            await conn.disconnect()  # what it had half read would confuse the next user
            raise
        finally:
            await self.pool.release(conn)

    async def run_routed(self, command: Command) -> Any:
        return await self.server.execute_command(*command)

    async def refresh(self) -> None:
        """One server has no slot map."""

    async def check(self) -> None:
        await self.server.ping()

    async def _count_replicas(self, node: Node) -> int:
        try:
            info: Any = await self.server.info("replication")
        except ResponseError:  # a server without INFO (fakeredis) has no replicas
            return 0
        return int(info.get("connected_slaves", 0))


class _NotSent(Exception):
    """The write failed: the server got nothing of it."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


async def _reply(conn: AbstractConnection) -> Any:
    """One reply; an error answered to this command is its reply, not the batch's end.

    Without a timer of its own (math.inf): the batch has one.
    """
    try:
        return await conn.read_response(timeout=math.inf)
    except ResponseError as exc:
        return exc
