"""Accepting connections a few at a time, so the sockets already open keep their turn.

uvloop (libuv) accepts every connection waiting in the listen backlog in one callback, and
asyncio's loop up to `backlog` of them (4096 here). After a worker restart that is
thousands of handshakes begun in one turn of the event loop, each parsed, checked and
upgraded over the next turns, and a notice to a device that is already connected waits
behind all of them: p99 0.5-2 s during a storm of 10,000 (docs/BENCHMARKS.md). A paced
site accepts at most `per_turn` connections each time its socket is readable. The rest
wait in the kernel's backlog, already connected, and since the socket stays readable the
next turn takes the next few, after whatever else was ready: admission keeps going at
the pace the loop can serve, and a notice waits for a few handshakes at most.

`run_app` is aiohttp's `web.run_app` with this site in place of its TCP site.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_runner import GracefulExit

log = logging.getLogger(__name__)

ACCEPT_RETRY_DELAY = 1.0  # out of descriptors: listen again this much later (as asyncio)
ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's words, for the log filter
_GONE_BEFORE_ACCEPT = (errno.ECONNABORTED, errno.EPROTO, errno.EPERM)


class PacedListener:
    """One listening socket whose connections are handed to `serve` a few per turn."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        per_turn: int,
    ) -> None:
        self.loop, self.sock, self.per_turn = loop, sock, per_turn
        self.protocol_factory = protocol_factory
        self.sockets = [sock]
        self.accepted = 0
        self._retry: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(self.per_turn):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _GONE_BEFORE_ACCEPT:
                    continue
                self._pause(exc)
                return
            self.accepted += 1
            conn.setblocking(False)
            self.loop.create_task(self._connect(conn))

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.protocol_factory, conn)
        except OSError as exc:  # it went away in between
            log.debug("accepted connection lost before serving: %s", exc)
            conn.close()

    def _pause(self, exc: OSError) -> None:
        """Out of descriptors (EMFILE, ENFILE, ENOBUFS): a readable socket would spin."""
        self.loop.call_exception_handler(
            {"message": ACCEPT_FAILED, "exception": exc, "socket": self.sock}
        )
        self.loop.remove_reader(self.sock.fileno())
        self._retry = self.loop.call_later(ACCEPT_RETRY_DELAY, self._resume)

    def _resume(self) -> None:
        self._retry = None
        self.loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        with contextlib.suppress(ValueError):  # already closed
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


def listening_sockets(host: str, port: int, backlog: int, reuse_port: bool) -> list[socket.socket]:
    """Bound, listening sockets for every address of `host`, as asyncio's create_server."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class PacedSite(web.BaseSite):
    """aiohttp's TCP site, accepting at most `per_turn` connections per socket and turn."""

    __slots__ = ("_host", "_listeners", "_per_turn", "_port", "_reuse_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        per_turn: int,
        backlog: int = 128,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port, self._per_turn = host, port, per_turn
        self._reuse_port = reuse_port
        self._listeners: list[PacedListener] = []

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def listeners(self) -> list[PacedListener]:
        return self._listeners

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None  # BaseSite's constructor checked
        sockets = listening_sockets(self._host, self._port, self._backlog, self._reuse_port)
        self._listeners = [PacedListener(loop, s, server, self._per_turn) for s in sockets]

    async def stop(self) -> None:
        self._runner._check_site(self)
        for listener in self._listeners:
            listener.close()
        self._runner._unreg_site(self)


def run_app(
    app: web.Application,
    *,
    loop: asyncio.AbstractEventLoop,
    host: str,
    port: int,
    per_turn: int,
    backlog: int = 128,
    reuse_port: bool | None = None,
    print: Callable[[str], None] | None = None,
    **runner_options: Any,
) -> None:
    """Serve `app` on a PacedSite until GracefulExit (SIGTERM) or Ctrl-C, then clean up,
    as `web.run_app` does."""

    async def serve() -> None:
        runner = web.AppRunner(app, handle_signals=True, **runner_options)
        await runner.setup()
        try:
            site = PacedSite(
                runner, host, port, per_turn=per_turn, backlog=backlog, reuse_port=bool(reuse_port)
            )
            await site.start()
            if print is not None:
                print(f"======== Running on {site.name} ========")
            await asyncio.Event().wait()  # until cancelled
        finally:
            await runner.cleanup()

    asyncio.set_event_loop(loop)
    main = loop.create_task(serve())
    try:
        loop.run_until_complete(main)
    except (GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {"message": "unhandled exception during shutdown", "exception": task.exception()}
            )
