"""Running the worker's loops as tasks that stop promptly when cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

STOP_TIMEOUT = 3.0


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
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        for task in pending:  # should not happen; never hang a shutdown on it
            log.error("task %s did not stop when cancelled", task.get_name())
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("task %s failed", task.get_name(), exc_info=task.exception())
