"""Coalesced reads (auto-pipelining): the reads of concurrent requests leave as one pipeline.

Every request must read Redis after it arrived: a revoked token fails on the very next
request, on any process, so nothing of a session is cached here. What requests can share
is the trip: reads issued in the same turn of the event loop are written as one pipeline,
on one connection, and each request gets its own reply. N requests then cost one write,
one read and one pool checkout instead of N, and that, not the network, is what redis-py
spends its CPU on. A batch leaves at the end of the turn it was started in, never after a
timer, so a lone request waits for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import AskError
from redis.exceptions import ConnectionError as RedisConnectionError

from service.engine.base import Engine, Node, NodeGone
from service.engine.errors import REDIS_DOWN

MAX_BATCH = 128  # commands per pipeline; more wait for the next one, sent at once too
# Pipelines out at once. Past it, new reads gather for the next one: a burst then costs a
# few large pipelines rather than a new Redis connection per small one (each connection
# the pool opens in a hurry costs more CPU than the reads it carries).
MAX_IN_FLIGHT = 4

# Commands that leave together, in order, and the future of their replies.
Pending = tuple[tuple[Sequence[Any], ...], "asyncio.Future[list[Any]]"]


class ReadBatcher:
    """`await batcher.execute("HGETALL", key)`: a command of the next shared pipeline.

    An error answered to one command reaches that request only; a pipeline that fails as
    a whole (a lost connection) fails only the requests in it. A request cancelled while it
    waits is skipped. On a cluster the batch is split by master and each part goes through
    that master's own connection pool: the cluster client's pipeline would instead retry a
    dead node for seconds, closing every connection of the client each time, where a
    request must get its 503 at once.
    """

    def __init__(
        self, engine: Engine, max_batch: int = MAX_BATCH, max_in_flight: int = MAX_IN_FLIGHT
    ) -> None:
        self.engine, self.max_batch, self.max_in_flight = engine, max_batch, max_in_flight
        self._pending: list[Pending] = []
        self._flush_scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self.batches_sent = 0  # how many batches (pipelines) left so far

    async def execute(self, *command: Any) -> Any:
        """Run one keyed read command (its key second, as in HGETALL key)."""
        return (await self.execute_together(command))[0]

    async def execute_together(self, *commands: Sequence[Any]) -> list[Any]:
        """Run keyed read commands of one slot in one trip, in this order: they are never
        split between pipelines, so Redis runs them one right after the other. Their
        replies, or the first error answered to one of them."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((commands, future))
        self._schedule()
        return await future

    def _schedule(self) -> None:
        """Flush at the end of this turn, unless one is due already or all slots are out."""
        if not self._flush_scheduled and len(self._in_flight) < self.max_in_flight:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def close(self) -> None:
        """Wait for the batches already sent (their requests still get answers)."""
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._pending and len(self._in_flight) < self.max_in_flight:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            self._spawn(self._send(batch))

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._in_flight.add(task)
        task.add_done_callback(self._landed)

    def _landed(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._pending:  # what gathered meanwhile leaves now
            self._schedule()

    async def _send(self, batch: list[Pending]) -> None:
        batch = [(commands, future) for commands, future in batch if not future.done()]
        if not batch:
            return
        self.batches_sent += 1
        masters = self.engine.masters()
        if len(masters) == 1:  # one server (or a cluster of one): no split to make
            await self._send_to_node(masters[0], batch)
            return
        by_node: dict[Node, list[Pending]] = {}
        for commands, future in batch:
            node = self.engine.node_of(str(commands[0][1]))
            by_node.setdefault(node, []).append((commands, future))
        await asyncio.gather(*(self._send_to_node(node, part) for node, part in by_node.items()))

    async def _send_to_node(self, node: Node, batch: list[Pending]) -> None:
        commands = [command for group, _ in batch for command in group]
        try:
            replies = await _settle(batch, self.engine.run_on(node, commands, repeatable=True))
        except NodeGone:  # the map changed since the split: each goes the client's own way
            self._retry_each(batch)
            return
        if replies is None or any(isinstance(r, RedisConnectionError) for r in replies):
            with contextlib.suppress(*REDIS_DOWN):  # the next batches ask the map again
                await self.engine.refresh()
            return
        # A slot that moved (or is moving): the client's own redirects follow it.
        groups = _grouped(batch, replies)
        self._retry_each([p for p, group in zip(batch, groups, strict=True) if _moved(group)])

    def _retry_each(self, batch: list[Pending]) -> None:
        for commands, future in batch:
            if not future.done():
                self._spawn(_settle([(commands, future)], self._routed(commands)))

    async def _routed(self, commands: tuple[Sequence[Any], ...]) -> list[Any]:
        return [await self.engine.run_routed(command) for command in commands]


def _moved(replies: list[Any]) -> bool:
    return any(isinstance(reply, AskError) for reply in replies)


def _grouped(batch: list[Pending], replies: list[Any]) -> list[list[Any]]:
    """The flat replies of a batch, cut back into each entry's own."""
    groups, at = [], 0
    for commands, _ in batch:
        groups.append(replies[at : at + len(commands)])
        at += len(commands)
    return groups


async def _settle(batch: list[Pending], replies: Any) -> list[Any] | None:
    """Hand each waiting request its replies (a redirect is left for the caller to retry);
    None when the whole batch failed, and each request got that error. NodeGone, raised
    before anything was sent, is left to the caller."""
    try:
        results = list(await replies)
    except asyncio.CancelledError:
        for _, future in batch:
            future.cancel()
        raise
    except NodeGone:
        raise
    except Exception as exc:
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)
        return None
    for (_, future), group in zip(batch, _grouped(batch, results), strict=True):
        if future.done() or _moved(group):
            continue  # cancelled while the batch was out, or to be retried
        error = next((reply for reply in group if isinstance(reply, Exception)), None)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(group)
    return results
