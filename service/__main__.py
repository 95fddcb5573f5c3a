"""`python -m service`: run the API."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from service.app import create_app
from service.devredis import embedded_redis_if_needed
from service.settings import LISTEN_BACKLOG, ConfigError, Settings


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # The access log would print request lines only; tokens travel in headers, never URLs.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def main() -> int:
    try:
        settings = Settings.from_env()
        app = create_app(settings)
    except ConfigError as exc:
        print(f"sessionwire: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    settings.warn_about_defaults()
    with embedded_redis_if_needed(settings):
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            print=lambda _: logging.getLogger("service").info(
                "API listening on http://%s:%d", settings.host, settings.port
            ),
            shutdown_timeout=2,
            backlog=LISTEN_BACKLOG,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
