"""One Sessionwire process (the API or the worker): settings, logging, then serve."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable

from aiohttp import web

from service.devredis import embedded_redis_if_needed
from service.limits import harden_process, quiet_accept_errors, server_options
from service.settings import ConfigError, Settings

log = logging.getLogger(__name__)

EXIT_CONFIG = 2
# aiohttp's default listen backlog of 128 drops SYNs when hundreds of clients connect at
# once (a worker restart brings every device back); each then waits a 1 s retransmit.
# 4096 is Linux's default cap (net.core.somaxconn), which bounds whatever is asked.
LISTEN_BACKLOG = 4096


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # The access log would print request lines only; tokens travel in headers, never URLs.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """uvloop when asked for and installed (it serves ~10% more requests per core)."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("EVENT_LOOP=uvloop, but uvloop is not installed: using asyncio's loop")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def serve(
    what: str,
    build: Callable[[Settings], web.Application],
    port: Callable[[Settings], int],
    **run_app_options: object,
) -> int:
    """Read the settings, build the app and serve it until signalled; the exit status.

    A bad setting is one line on stderr and exit status 2, before anything starts.
    """
    try:
        settings = Settings.from_env()
        app = build(settings)
    except ConfigError as exc:
        print(f"sessionwire {what}: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(settings.log_level)
    harden_process()
    app.cleanup_ctx.append(quiet_accept_errors)
    settings.warn_about_defaults()
    address = f"http://{settings.host}:{port(settings)}"
    loop = new_event_loop(settings.event_loop)
    log.info("%s runs on %s", what, type(loop).__module__.split(".")[0])
    try:
        with embedded_redis_if_needed(settings):
            web.run_app(
                app,
                loop=loop,
                host=settings.host,
                port=port(settings),
                backlog=LISTEN_BACKLOG,
                print=lambda _: log.info("%s listening on %s", what, address),
                **server_options(settings.request_timeout),
                **run_app_options,  # type: ignore[arg-type]
            )
    except ConfigError as exc:  # found while connecting, e.g. what the server turned out to be
        print(f"sessionwire {what}: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0
