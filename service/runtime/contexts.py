"""Cleanup contexts both apps use: each long-lived resource is created, yielded, closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

from aiohttp import web

from service.engine.connect import RedisClient, connected, warn_if_not_persistent
from service.settings import Settings


def redis_ctx(
    settings: Settings,
    given: RedisClient | None,
    attach: Callable[[web.Application, RedisClient], None],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An app's Redis as a cleanup context: `attach` stores the client and what uses it.

    A `given` client is used as is and left open for its owner; otherwise one is made,
    waited for, and closed at the end.
    """

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            client = given or await stack.enter_async_context(connected(settings))
            attach(app, client)
            if settings.app_env == "production":
                await warn_if_not_persistent(client)
            yield

    return ctx
