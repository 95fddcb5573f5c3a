"""Helpers for the worker tests: sign a device in (through the store) and talk WebSocket."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from service.sessions.records import StoredSession
from service.sessions.store import SessionStore
from service.sessions.tokens import TokenCodec
from service.settings import Settings

WAIT = 5.0  # how long a test waits for a message that must come
PRESENCE = ("online", "offline")  # sessions.changed events a socket opening or closing causes
T = TypeVar("T")


async def wait_for(
    read: Callable[[], Awaitable[T]], done: Callable[[T], bool], wait: float = WAIT
) -> T:
    """Read until `done(value)`: for state that changes without a message to wait on."""
    deadline = time.monotonic() + wait
    while not done(value := await read()):
        assert time.monotonic() < deadline, f"still {value!r} after {wait}s"
        await asyncio.sleep(0.02)
    return value


@dataclass
class Login:
    username: str
    session: StoredSession
    token: str

    @property
    def sid(self) -> str:
        return self.session.session_id


async def sign_in(
    store: SessionStore,
    settings: Settings,
    username: str,
    device_name: str = "device",
    device_id: str = "",
) -> Login:
    """Create a session as POST /login does (minus the password) and issue its token."""
    session, _ = await store.create(
        username,
        session_id=secrets.token_urlsafe(16),
        device_id=device_id,
        device_name=device_name,
        user_agent="pytest",
        ip="127.0.0.1",
    )
    token = TokenCodec(settings, store.clock).issue(
        username, session.session_id, session.created_ms, session.max_ms
    )
    return Login(username, session, token)


class Device:
    """One connected socket, with waits that time out instead of hanging."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @classmethod
    async def connect(
        cls, session: aiohttp.ClientSession, url: str, token: str, **kwargs: Any
    ) -> Device:
        ws = await session.ws_connect(
            url, protocols=("sessionwire.v1", f"bearer.{token}"), **kwargs
        )
        return cls(ws)

    async def next(self, wait: float = WAIT) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), wait)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"expected a text frame, got {msg.type} {msg.data!r}")
        return json.loads(msg.data)

    async def expect(self, kind: str, wait: float = WAIT) -> dict[str, Any]:
        message = await self.next(wait)
        assert message["type"] == kind, message
        return message

    async def until(self, kind: str, wait: float = WAIT) -> dict[str, Any]:
        """Skip other messages until one of `kind` comes."""
        while True:
            message = await self.next(wait)
            if message["type"] == kind:
                return message

    async def change(self, wait: float = WAIT) -> dict[str, Any]:
        """The next `sessions.changed` other than presence (online, offline), which the
        user's devices are told whenever another opens or closes its socket."""
        while True:
            message = await self.expect("sessions.changed", wait)
            if message["event"] not in PRESENCE:
                return message

    async def ready(self) -> dict[str, Any]:
        return await self.expect("ready")

    async def closed(self, wait: float = WAIT) -> int | None:
        """Wait for the close and return the code the server sent."""
        msg = await asyncio.wait_for(self.ws.receive(), wait)
        # The server may drop TCP right after its close frame; the frame's code is what counts.
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return int(msg.data)
        assert msg.type == aiohttp.WSMsgType.CLOSED, msg
        return self.ws.close_code

    async def revoked(self, wait: float = WAIT) -> dict[str, Any]:
        """Expect the session.revoked notice (after presence notices, if any), then 4501."""
        message = await self.next(wait)
        while message["type"] == "sessions.changed" and message["event"] in PRESENCE:
            message = await self.next(wait)
        assert message["type"] == "session.revoked", message
        assert await self.closed() == 4501
        return message


async def start_gateway(aiohttp_client: Any, settings: Settings, **kwargs: Any) -> Any:
    """An in-process gateway (pytest-aiohttp test client), once its /readyz says so."""
    from workers.app import create_gateway_app

    client = await aiohttp_client(create_gateway_app(settings, **kwargs))
    await wait_for(lambda: client.get("/readyz"), lambda resp: resp.status == 200)
    return client


async def connect(gw: Any, login: Login) -> Device:
    """Connect a device to an in-process gateway and read its `ready`."""
    ws = await gw.ws_connect("/ws", protocols=("sessionwire.v1", f"bearer.{login.token}"))
    device = Device(ws)
    assert (await device.ready())["session_id"] == login.sid
    return device


async def metric(gw: Any, line_start: str) -> float:
    """The value of the first /metrics line starting with `line_start`."""
    text = await (await gw.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not in /metrics")
