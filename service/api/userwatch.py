"""The API process follows its users file: a look once a second, and a reread on SIGHUP.

A look is one stat (service/users.py compares device, inode, size and times), so it costs
nothing while the file stays as it is. Sign-ins look for themselves as well; this keeps
`/me` (email, bio) current and says in the log when the file was reread, or was bad.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from service.api.appkeys import USERS

INTERVAL = 1.0


async def follow_users_file(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: keep app[USERS] as the file says until the app stops."""
    directory = app[USERS]
    loop = asyncio.get_running_loop()
    hangup = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, hangup.set)

    async def follow() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(INTERVAL):
                    await hangup.wait()
            directory.refresh(force=hangup.is_set())  # SIGHUP: even if it looks the same
            hangup.clear()

    task = asyncio.create_task(follow(), name="follow_users_file")
    yield
    loop.remove_signal_handler(signal.SIGHUP)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
