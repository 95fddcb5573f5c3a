"""A refused Origin at the gateway is logged with the origin, once per origin per minute."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient

from tests.conftest import ManualClock, make_settings
from tests.devices import start_gateway
from workers import origins
from workers.origins import RefusedOrigins

ALLOWED = "https://app.example"
LOGGER = "workers.origins"


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    return [r.getMessage() for r in lines]


async def test_a_refused_origin_is_logged_once_a_minute(
    aiohttp_client: AiohttpClient,
    redis_url: str,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(redis_url, allowed_origins=(ALLOWED,))
    gateway = await start_gateway(aiohttp_client, settings, clock=clock)

    async def knock(origin: str) -> None:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await gateway.ws_connect("/ws", protocols=("sessionwire.v1",), origin=origin)
        assert refused.value.status == 403

    caplog.set_level(logging.WARNING, LOGGER)
    for _ in range(3):
        await knock("https://wrong.example")
    (line,) = refusals(caplog)
    assert "'https://wrong.example'" in line and ALLOWED in line and "ALLOWED_ORIGINS" in line

    await knock("http://localhost:3000")  # another origin has a minute of its own
    assert len(refusals(caplog)) == 2 and "'http://localhost:3000'" in refusals(caplog)[1]

    clock.advance(59)
    await knock("https://wrong.example")
    assert len(refusals(caplog)) == 2
    clock.advance(1)
    await knock("https://wrong.example")
    assert len(refusals(caplog)) == 3
    assert "3 more refusals in the last minute" in refusals(caplog)[2]

    # An allowed origin is never logged.
    with pytest.raises(aiohttp.WSServerHandshakeError) as no_token:
        await gateway.ws_connect("/ws", protocols=("sessionwire.v1",), origin=ALLOWED)
    assert no_token.value.status == 401
    assert len(refusals(caplog)) == 3


def test_memory_and_lines_stay_bounded(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    log = RefusedOrigins(clock, frozenset({ALLOWED}))
    for n in range(origins.CAPACITY * 4):
        log.refused(f"https://site{n}.example")
    assert log.remembered <= origins.CAPACITY + 1
    lines = refusals(caplog)
    assert len(lines) == origins.CAPACITY + 1  # one each, then one for all the others
    assert "too many origins to log each" in lines[-1]

    clock.advance(60)  # a minute on, room again
    log.refused("https://late.example")
    assert "'https://late.example'" in refusals(caplog)[-1]
    assert log.remembered <= origins.CAPACITY + 1
    log.refused("https://x.example/" + "a" * 10_000)
    assert len(refusals(caplog)[-1]) < 1000
