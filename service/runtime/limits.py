"""What one process does so that strangers can't hurt it: time limits, quiet logs, no banner.

aiohttp has no timeout for a slow request: its keep-alive timer is the only thing that cuts
a connection whose request never completes. Set to REQUEST_TIMEOUT, it bounds the headers
(of the first request, and of each next one on a kept-alive connection); `body_deadline`
bounds the body. Logging is made safe for what strangers send: no token, no traceback for
a client's malformed request, one line (not one per try) when descriptors run out.
"""

from __future__ import annotations

import asyncio
import logging
import re
import resource
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web, web_response
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger(__name__)

SERVER_NAME = "sessionwire"  # instead of aiohttp's "Python/3.x aiohttp/3.y" banner
ACCEPT_ERROR_EVERY = 10.0  # seconds between two log lines about failed accepts
_BEARER = re.compile(r"bearer\.[^\s,'\"\]\)]+", re.IGNORECASE)
_ACCEPT_FAILED = "socket.accept() out of system resource"


class RequestTimedOut(Exception):
    """The body did not arrive within REQUEST_TIMEOUT."""


def server_options(request_timeout: int) -> dict[str, Any]:
    """`web.run_app` options of both processes.

    A connection with no complete request within the timeout is closed; a body the handler
    did not read closes the connection after the answer instead of being read (aiohttp's
    "lingering") for up to 10 s more.
    """
    return {"keepalive_timeout": request_timeout, "lingering_time": 0}


@asynccontextmanager
async def body_deadline(seconds: float) -> AsyncIterator[None]:
    """Raise RequestTimedOut when the block (reading a body) takes longer than `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise RequestTimedOut() from None


def harden_process() -> None:
    """Once per process, before serving: descriptors, banner and log filters."""
    raise_fd_limit()
    web_response.SERVER_SOFTWARE = SERVER_NAME  # read by every response's header defaults
    logging.getLogger("aiohttp.websocket").addFilter(redact_tokens)
    logging.getLogger("aiohttp.server").addFilter(client_errors_quiet)


def raise_fd_limit() -> None:
    """Raise the soft limit on open files to the hard one: each socket is a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def redact_tokens(record: logging.LogRecord) -> bool:
    """Replace `bearer.<jwt>` (aiohttp logs the subprotocols a client offered) by a mark."""
    message = record.getMessage()
    if "bearer." in message.lower():
        record.msg, record.args = _BEARER.sub("bearer.<redacted>", message), None
    return True


def client_errors_quiet(record: logging.LogRecord) -> bool:
    """A malformed request is the client's error: at most a DEBUG line, no traceback."""
    exc = record.exc_info[1] if record.exc_info else None
    if not isinstance(exc, HttpProcessingError):
        return True
    record.levelno, record.levelname = logging.DEBUG, "DEBUG"
    record.msg, record.args = f"{record.getMessage()}: {exc.code} {exc.message}", None
    record.exc_info = record.exc_text = None
    return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def accept_errors_quiet(clock: Callable[[], float] = time.monotonic) -> Callable[..., None]:
    """A loop exception handler that logs failed accepts once per ACCEPT_ERROR_EVERY.

    On EMFILE, CPython 3.11's accept loop reports every try (up to the listen backlog per
    wake-up) with a traceback: thousands of lines a second while descriptors are out.
    """
    state = {"last": float("-inf"), "quiet": 0}

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != _ACCEPT_FAILED:
            loop.default_exception_handler(context)
            return
        now = clock()
        if now - state["last"] < ACCEPT_ERROR_EVERY:
            state["quiet"] += 1
            return
        log.error(
            "cannot accept connections: %s (%d more failed tries since the last report)",
            context.get("exception"),
            state["quiet"],
        )
        state["last"], state["quiet"] = now, 0

    return handler


async def quiet_accept_errors(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: install `accept_errors_quiet` on the serving loop."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(accept_errors_quiet())
    yield
    loop.set_exception_handler(previous)
