"""One Sessionwire process (the API or the worker): settings, logging, then serve.

With a concurrency of 1 (WEB_CONCURRENCY, GATEWAY_CONCURRENCY) the process serves itself;
with more it becomes a supervisor of that many children sharing the port with SO_REUSEPORT
(service/supervisor.py). Either way a port that can't be had is one line, before anything
starts, and "listening" is said only once the socket listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial

from aiohttp import web
from aiohttp.web_runner import GracefulExit

from service.engine.devredis import embedded_redis_if_needed
from service.runtime import accept
from service.runtime.health import metrics_site
from service.runtime.limits import harden_process, quiet_accept_errors, server_options
from service.runtime.logformat import JsonFormatter
from service.runtime.sharedmetrics import process_ended, shared_between_processes
from service.runtime.supervisor import Supervisor
from service.settings import ConfigError, Settings

log = logging.getLogger(__name__)

EXIT_CONFIG = 2
EXIT_LISTEN = 3  # the port is taken or may not be used
# aiohttp's default listen backlog of 128 drops SYNs when hundreds of clients connect at
# once (a worker restart brings every device back); each then waits a 1 s retransmit.
# Linux silently caps what is asked at net.core.somaxconn (4096 by default): asking for
# the most it can give lets an operator who raises it for a storm of more devices than
# that (docs/DEPLOY.md) get it without a new release.
LISTEN_BACKLOG = 65535


def setup_logging(level: str, log_format: str = "text") -> None:
    """Lines for people, or (LOG_FORMAT=json) one JSON object per line for shippers."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
        )
    logging.basicConfig(level=level, handlers=[handler])
    # The access log would print request lines only; tokens travel in headers, never URLs.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


# Collect young objects every 20,000 allocations instead of 700, and look at old ones less
# often. A process holding thousands of sockets has hundreds of thousands of long-lived
# objects, and a default full collection rescans them all every few hundred connects: in
# a reconnect storm of 10,000 devices that was a third of the worker's CPU (698 against
# 416 µs per connect, bench/bench_storm.py). Cycles are still collected, a little later.
# The middle generation is collected every 2 young collections, not 20: each then looks at
# ~40,000 objects, not ~400,000, which in a storm held the event loop for 230-250 ms at a
# time (and every notice with it); the full collections stay as rare (2 x 500 = 20 x 50).
GC_THRESHOLDS = (20_000, 2, 500)
# The worker, whose pauses hold notices, collects in smaller steps: a middle collection
# looks at ~15,000 objects, and stalled a storm for 5-27 ms, not 11-69 (docs/BENCHMARKS.md).
# The full ones are as rare (5,000 x 2 x 2,000 = 20,000 x 2 x 500).
SMALL_STEPS_GC = (5_000, 2, 2_000)


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Fewer collections; what exists at start-up (modules, the app) is never rescanned."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


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


@dataclass(frozen=True, slots=True)
class Role:
    """What kind of process this is: its name in messages, its ports and how many copies."""

    name: str
    port_variable: str
    port: Callable[[Settings], int]
    processes: Callable[[Settings], int]
    metrics_variable: str
    metrics_port: Callable[[Settings], int | None]


API = Role(
    "API",
    "PORT",
    lambda s: s.port,
    lambda s: s.web_concurrency,
    "METRICS_PORT",
    lambda s: s.metrics_port,
)
WORKER = Role(
    "worker",
    "GATEWAY_PORT",
    lambda s: s.gateway_port,
    lambda s: s.gateway_concurrency,
    "GATEWAY_METRICS_PORT",
    lambda s: s.gateway_metrics_port,
)


def serve(
    role: Role, build: Callable[[Settings], web.Application], **run_app_options: object
) -> int:
    """Read the settings, build the app and serve it until signalled; the exit status.

    A bad setting is one line on stderr and exit status 2, a port that can't be had one
    line and status 3, before anything starts. Several processes keep their metrics in
    one directory for the run (service/runtime/sharedmetrics.py), made before the app is.
    """
    what = role.name
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        return _refuse(what, f"configuration error: {exc}", EXIT_CONFIG)
    processes = role.processes(settings)
    with contextlib.ExitStack() as shared:
        if processes > 1:
            shared.enter_context(shared_between_processes(what))
        return _build_and_serve(role, build, settings, processes, run_app_options)


def _build_and_serve(
    role: Role,
    build: Callable[[Settings], web.Application],
    settings: Settings,
    processes: int,
    run_app_options: dict[str, object],
) -> int:
    what = role.name
    try:
        setup_logging(settings.log_level, settings.log_format)  # before the build: its news
        app = build(settings)
    except ConfigError as exc:
        return _refuse(what, f"configuration error: {exc}", EXIT_CONFIG)
    harden_process()
    app.cleanup_ctx.append(quiet_accept_errors)
    app.cleanup_ctx.append(first_stop_signal_only)
    settings.warn_about_defaults()
    listen = Listen(settings.host, role.port(settings), role.port_variable)
    if problem := listen.problem():
        return _refuse(what, problem, EXIT_LISTEN)
    if (metrics_port := role.metrics_port(settings)) is not None:
        metrics = Listen(settings.host, metrics_port, role.metrics_variable)
        if problem := metrics.problem():
            return _refuse(what, problem, EXIT_LISTEN)
        app.cleanup_ctx.append(metrics_site(settings.host, metrics_port, shared=processes > 1))
    try:
        with embedded_redis_if_needed(settings):
            if processes == 1:

                def announce() -> None:
                    log.info("%s listening on %s", what, listen.address)

                return _run(what, app, settings, listen, announce, run_app_options)

            def child(ready: Callable[[], None]) -> int:
                return _run(what, app, settings, listen, ready, run_app_options, shared=True)

            fatal = frozenset({EXIT_CONFIG, EXIT_LISTEN})
            supervisor = Supervisor(what, processes, child, fatal=fatal, on_exit=process_ended)
            return supervisor.run(listen.address)
    except ConfigError as exc:  # e.g. an embedded Redis needed, but none can be had
        return _refuse(what, f"configuration error: {exc}", EXIT_CONFIG)


class Listen:
    """Where a process listens, and what to say when it can't."""

    def __init__(self, host: str, port: int, variable: str) -> None:
        self.host, self.port, self.variable = host, port, variable

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.port}"

    def in_use(self) -> str:
        return f"port {self.port} is in use on {self.host} (set {self.variable} to another)"

    def problem(self) -> str | None:
        """Why the port can't be had now, in one line, or None.

        Each address is bound once without SO_REUSEPORT: that fails even when the holder
        (another copy of this service, say) shares its port with SO_REUSEPORT.
        """
        try:
            found = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            return f"can't listen on {self.host}:{self.port}: {exc.strerror}"
        for family, kind, proto, _, address in found:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:  # as asyncio binds it: IPv6 only
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    probe.bind(address)
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        return self.in_use()
                    return f"can't listen on {self.host}:{self.port}: {exc.strerror}"
        return None


def _run(
    what: str,
    app: web.Application,
    settings: Settings,
    listen: Listen,
    announce: Callable[[], None],
    options: dict[str, object],
    *,
    shared: bool = False,
) -> int:
    """Serve `app` in this process until signalled; `announce` once the socket listens.

    `accept_per_turn` among the options paces accepting (service/runtime/accept.py),
    `gc_thresholds` replaces GC_THRESHOLDS.
    """
    # SIGHUP means "reread the users file": the API's own handler takes it; nobody else dies.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    options = dict(options)
    tune_gc(options.pop("gc_thresholds", GC_THRESHOLDS))  # type: ignore[arg-type]
    loop = new_event_loop(settings.event_loop)
    log.info("%s runs on %s", what, type(loop).__module__.split(".")[0])
    per_turn = options.pop("accept_per_turn", None)
    run_app = partial(accept.run_app, per_turn=per_turn) if per_turn else web.run_app
    try:
        run_app(
            app,
            loop=loop,
            host=settings.host,
            port=listen.port,
            backlog=LISTEN_BACKLOG,
            reuse_port=shared or None,
            print=lambda _: announce(),
            **server_options(settings.request_timeout),
            **options,  # type: ignore[arg-type]
        )
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:  # taken since it was checked: still one line
            raise
        return _refuse(what, listen.in_use(), EXIT_LISTEN)
    except ConfigError as exc:  # found while connecting, e.g. what the server turned out to be
        return _refuse(what, f"configuration error: {exc}", EXIT_CONFIG)
    return 0


def _refuse(what: str, problem: str, status: int) -> int:
    print(f"sessionwire {what}: {problem}", file=sys.stderr)
    return status


async def first_stop_signal_only(app: web.Application) -> AsyncIterator[None]:
    """Stop at the first SIGTERM or SIGINT and ignore the next ones.

    honcho signals the whole process group and a supervisor passes SIGTERM on too: a second
    one would otherwise cut the graceful shutdown (sockets closing with 1001) short.
    """
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for signo in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signo, lambda: None)
        raise GracefulExit()

    for signo in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signo, stop)
    yield
