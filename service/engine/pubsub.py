"""Sharded pub/sub on one Redis node: a plain connection subscribed to users' channels.

The session scripts publish with SPUBLISH on the user's channel, which carries the user's
hash tag: on a cluster only the master that owns that slot (and its replicas) sees the
message, however many nodes there are, and a subscriber must SSUBSCRIBE on that master.
One connection per master, each SSUBSCRIBE naming channels of one slot only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from redis.asyncio.connection import AbstractConnection

from service.engine.base import Engine, Node


@dataclass(frozen=True, slots=True)
class Push:
    """What a subscribed connection receives: `smessage` (data is the message),
    `ssubscribe` / `sunsubscribe` (confirmations, or an unsolicited `sunsubscribe` when the
    channel's slot moved away), or `pong` (data is the ping's payload)."""

    kind: str
    channel: str
    data: str


class ShardConnection:
    """One node's sharded subscriber. Errors the node answers to a command (MOVED for a
    slot it no longer owns) are raised by `read` and leave the connection usable."""

    def __init__(self, engine: Engine, node: Node) -> None:
        self.engine, self.node = engine, node
        self._conn: AbstractConnection = engine.pubsub_connection(node)

    async def open(self) -> None:
        await self._conn.connect()

    async def close(self) -> None:
        await self._conn.disconnect()

    async def subscribe(self, channels: Iterable[str]) -> None:
        await self._send("SSUBSCRIBE", channels)

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        await self._send("SUNSUBSCRIBE", channels)

    async def ping(self, payload: str) -> None:
        await self._conn.send_command("PING", payload)

    async def read(self, within: float) -> Push | None:
        """The next push, or None when nothing came within `within` seconds."""
        reply = await self._conn.read_response(timeout=within)
        if reply is None:
            return None
        if isinstance(reply, str):  # a ping's payload, echoed while nothing is subscribed
            return Push("pong", "", reply)
        if reply[0] == "pong":  # ['pong', payload] while subscribed
            return Push("pong", "", str(reply[1]))
        kind, channel, data = reply
        return Push(str(kind), str(channel), "" if isinstance(data, int) else str(data))

    async def _send(self, command: str, channels: Iterable[str]) -> None:
        """One command per group the engine allows (one slot each), all in one write."""
        commands = [(command, *group) for group in self.engine.group(channels)]
        if commands:
            await self._conn.send_packed_command(self._conn.pack_commands(commands))
