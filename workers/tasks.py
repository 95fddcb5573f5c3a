"""Running the worker's loops as tasks that stop promptly when cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import Any

log = logging.getLogger(__name__)

STOP_TIMEOUT = 3.0
CANCEL_AGAIN = 0.05  # seconds between cancellations of a task that did not stop


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library turned into another error.

    redis-py may convert a CancelledError arriving mid-command into a connection error;
    a loop that logs and carries on would then never stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@contextlib.asynccontextmanager
async def background(*loops: Callable[[], Coroutine[Any, Any, None]]) -> AsyncIterator[None]:
    """Run loops as tasks for the block; then cancel them and wait for them to end."""
    tasks = [asyncio.create_task(loop(), name=loop.__qualname__) for loop in loops]
    try:
        yield
    finally:
        pending = await stop(tasks, STOP_TIMEOUT)
        for task in pending:  # should not happen; never hang a shutdown on it
            log.error("task %s did not stop when cancelled", task.get_name())
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("task %s failed", task.get_name(), exc_info=task.exception())


async def stop(tasks: Iterable[asyncio.Task[Any]], within: float) -> set[asyncio.Task[Any]]:
    """Cancel `tasks` and wait for them to end; those still running after `within` s.

    A cancellation can be lost: redis-py turns one that arrives mid-command into a
    connection error, which its own retry then hides by sending the command again, and a
    loop that never sees an error never stops. So those still running are cancelled
    again, every CANCEL_AGAIN, until they end.
    """
    pending = set(tasks)
    deadline = asyncio.get_running_loop().time() + within
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(CANCEL_AGAIN, left))
    return pending
