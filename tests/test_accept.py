"""The paced site (service/runtime/accept.py): a burst of connections is accepted whole,
a few per turn of the event loop, and every one is served."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from service.runtime.accept import PacedSite
from tests.conftest import free_port

PER_TURN = 3
BURST = 400  # more than a turn takes, more than the listen backlog below


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


@pytest.fixture
async def site() -> AsyncIterator[PacedSite]:
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    paced = PacedSite(runner, "127.0.0.1", free_port(), per_turn=PER_TURN, backlog=64)
    await paced.start()
    try:
        yield paced
    finally:
        await runner.cleanup()


async def get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return await reader.read()
    finally:
        writer.close()


def port_of(site: PacedSite) -> int:
    return int(site.listeners[0].sockets[0].getsockname()[1])


async def test_a_burst_is_accepted_a_few_per_turn_and_every_connection_served(
    site: PacedSite,
) -> None:
    listener = site.listeners[0]
    per_turn: list[int] = []
    loop = asyncio.get_running_loop()
    seen = 0

    def turn() -> None:  # runs once per turn of the loop, between the accept callbacks
        nonlocal seen
        per_turn.append(listener.accepted - seen)
        seen = listener.accepted
        if not done.done():
            loop.call_soon(turn)

    done = asyncio.gather(*(get(port_of(site)) for _ in range(BURST)))
    loop.call_soon(turn)
    answers = await asyncio.wait_for(done, 60)
    assert all(a.startswith(b"HTTP/1.1 200") and a.endswith(b"hello") for a in answers)
    assert listener.accepted == BURST
    assert max(per_turn) <= PER_TURN
    assert sum(1 for n in per_turn if n) >= BURST // PER_TURN  # it was spread over turns


async def test_it_keeps_accepting_after_a_client_gives_up_in_the_backlog(
    site: PacedSite,
) -> None:
    port = port_of(site)
    # Connections that close before they are accepted (reset or FIN in the backlog).
    for _ in range(20):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.abort()
    assert (await asyncio.wait_for(get(port), 10)).endswith(b"hello")


async def test_stopping_closes_the_listening_socket(site: PacedSite) -> None:
    port = port_of(site)
    await site.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
