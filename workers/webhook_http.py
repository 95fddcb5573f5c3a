"""Sending one webhook: the worker's HTTP client, guarded against requests into the network.

The client session is created in a cleanup context and handed down. Its connector makes
every socket through `guarded_socket`, which refuses an address that is not public (unless
WEBHOOK_ALLOW_PRIVATE): that is the address actually connected to, whatever the URL's host
resolved to at creation, so DNS rebinding gains nothing. Redirects are not followed (a
redirect is a failure), the environment's proxies are not used, and a receiver's answer is
read only up to 64 KiB.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from service.events import schedule, urls

TIMEOUT = 15.0  # seconds for a whole attempt: connect, send, answer
READ_AT_MOST = 64 * 1024
USER_AGENT = "Sessionwire-Webhooks/1"

AddrInfo = tuple[int, int, int, str, tuple[str, int] | tuple[str, int, int, int]]


class AddressRefused(OSError):
    """The receiver's address is loopback, private, link-local or otherwise not public."""


def guarded_socket(allow_private: bool) -> Callable[[AddrInfo], socket.socket]:
    def make(addr_info: AddrInfo) -> socket.socket:
        family, kind, proto, _, address = addr_info
        if not allow_private and not urls.address_allowed(str(address[0])):
            raise AddressRefused(f"{address[0]} is not a public address")
        return socket.socket(family, kind, proto)

    return make


@asynccontextmanager
async def http_client(allow_private: bool) -> AsyncIterator[aiohttp.ClientSession]:
    """The client every delivery of this process goes through. No overall connection limit:
    each endpoint has its own (workers/delivery_queue.py), so one that hangs holds only its
    own connections."""
    connector = aiohttp.TCPConnector(
        limit=0, ttl_dns_cache=10, socket_factory=guarded_socket(allow_private)
    )
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=TIMEOUT),
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    ) as session:
        yield session


@dataclass(frozen=True, slots=True)
class Answer:
    """How one attempt went: the status (None when none came) and what to tell the log."""

    status: int | None
    retry_after: float | None = None
    error: str = ""
    body: bytes = b""  # of a 400 only (an SSF receiver says why in it)

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        return self.status == 410

    @property
    def reason(self) -> str:
        if self.error:
            return self.error
        if self.status is not None and 300 <= self.status < 400:
            return f"HTTP {self.status} (a redirect is a failure)"
        return f"HTTP {self.status}"


async def post(
    client: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    content_type: str = "application/json",
) -> Answer:
    """POST one message; any failure is an Answer, never an exception."""
    try:
        async with client.post(
            url,
            data=body,
            headers={"Content-Type": content_type, **headers},
            allow_redirects=False,
        ) as response:
            answered = await response.content.read(READ_AT_MOST)
            if not response.content.at_eof():
                response.close()  # a huge answer is not read to the end
            wait = None
            if response.status in schedule.RETRY_AFTER_STATUSES:
                wait = schedule.retry_after(response.headers.get("Retry-After"))
            return Answer(response.status, wait, body=answered if response.status == 400 else b"")
    except TimeoutError:
        return Answer(None, error=f"no answer within {TIMEOUT:g} s")
    except aiohttp.ClientConnectorError as exc:
        refused = isinstance(exc.os_error, AddressRefused)
        return Answer(
            None, error=("refused: " if refused else "cannot connect: ") + str(exc.os_error)
        )
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return Answer(None, error=f"{exc.__class__.__name__}: {exc}"[:200])
