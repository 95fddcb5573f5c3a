"""Writes a replica has acknowledged, so a revocation survives a failover.

Replication is asynchronous: a master that acknowledged a revoke and died before its
replica had it would bring the session back on the promoted replica. So a script that may
revoke runs with `WAIT 1 <ms>` right behind it on the same connection (WAIT covers the
writes of its own connection only), and the API answers once a replica has the change,
or once the short timeout has passed (then it is logged and counted, and still succeeds).
A master without replicas is not waited on: there is nothing to wait for.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import AskError, NoScriptError
from redis.exceptions import ConnectionError as RedisConnectionError

from service.engine.base import Engine, Node, NodeGone
from service.engine.errors import REDIS_DOWN

log = logging.getLogger(__name__)

# WAIT's timeout; Redis 7.0 rounds it up to its event loop's tick (100 ms at the default
# hz 10), so a revoke with no replica answering takes up to ~200 ms. With a healthy
# replica the acknowledgement comes back in well under a millisecond.
ACK_TIMEOUT_MS = 100
RETRIES = 2  # for a script the node didn't know yet, or a slot that had moved


class AcknowledgedWrites:
    def __init__(self, engine: Engine, on_unacknowledged: Callable[[], None] = lambda: None):
        self.engine, self.on_unacknowledged = engine, on_unacknowledged

    async def run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """The script's result, once a replica of the keys' master has its writes."""
        node = self.engine.node_of(keys[0])
        if not await self.engine.replicas(node):
            if self.engine.expects_replicas:  # a cluster master without one is degraded
                self._unacknowledged(node, "it has no replica connected")
            return await script(keys=keys, args=args)
        for _ in range(RETRIES + 1):
            outcome = await self._run_and_wait(node, script, keys, args)
            if outcome is not None:
                result, acknowledged = outcome
                if not acknowledged:
                    self._unacknowledged(node, f"no replica answered in {ACK_TIMEOUT_MS} ms")
                return result
            node = self.engine.node_of(keys[0])
        # Still moving: let the client's own redirects handle it, unacknowledged.
        self._unacknowledged(node, "its slot kept moving")
        return await script(keys=keys, args=args)

    async def _run_and_wait(
        self, node: Node, script: AsyncScript, keys: list[str], args: list[Any]
    ) -> tuple[Any, bool] | None:
        """(result, acknowledged), or None when it is worth another try (nothing ran).

        Both commands go in one write on one connection of the master: WAIT covers the
        writes of its own connection only. A write is never sent twice by itself.
        """
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        wait = ("WAIT", 1, ACK_TIMEOUT_MS)
        try:
            result, acked = await self.engine.run_on(node, [command, wait])
        except NodeGone:  # failed over since the map was read
            await self.engine.refresh()
            return None
        if isinstance(result, RedisConnectionError):  # tell the map, for the next call
            with contextlib.suppress(*REDIS_DOWN):
                await self.engine.refresh()
        if isinstance(result, NoScriptError):  # a promoted replica has no script cache
            await self.engine.client.script_load(script.script)
            return None
        if isinstance(result, AskError):  # MOVED or ASK: the slot is elsewhere now
            await self.engine.refresh()
            return None
        if isinstance(result, Exception):
            raise result
        return result, isinstance(acked, int) and acked >= 1

    def _unacknowledged(self, node: Node, why: str) -> None:
        log.warning("a revocation on %s is not acknowledged by a replica: %s", node.name, why)
        self.on_unacknowledged()
