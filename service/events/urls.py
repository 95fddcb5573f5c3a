"""Which webhook URLs may be called: the guard against server-side request forgery.

A URL must be https (http too outside production), name a host and carry no credentials.
Its host must resolve to public addresses only: loopback, private, link-local (the cloud
metadata service at 169.254.169.254 among them), unique-local, CGNAT, multicast and
reserved ranges are refused, unless WEBHOOK_ALLOW_PRIVATE is on. The check at creation is
a courtesy; the one that counts is at each delivery, on the address actually connected to
(`address_allowed`, used by the worker's socket factory), since DNS can change.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from service.settings import Settings

RESOLVE_TIMEOUT = 5.0
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv4 addresses embedded in IPv6

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(Exception):
    """The URL may not be called; the message says why, in words for the product."""


def address_allowed(address: str) -> bool:
    """Whether a peer address is a public unicast one (IPv4 inside IPv6 is unwrapped:
    mapped, 6to4 and NAT64 forms)."""
    try:
        ip: IpAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:  # 2002::/16 carries the IPv4 address it reaches
            ip = ip.sixtofour
        elif ip in NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.is_global and not ip.is_multicast


def parse(url: str, *, allow_http: bool) -> SplitResult:
    """The URL's parts, or UrlRefused when its form is not allowed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"not a valid URL: {exc}") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise UrlRefused("the URL must be https" + (" or http" if allow_http else ""))
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("the URL must not carry credentials; the signature authenticates")
    if not parts.hostname:
        raise UrlRefused("the URL has no host")
    if port == 0:
        raise UrlRefused("port 0 cannot be called")
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        raise UrlRefused("the URL must be plain ASCII without spaces (IDNA-encode the host)")
    return parts


async def check(url: str, *, allow_http: bool, allow_private: bool) -> None:
    """Raise UrlRefused unless the URL may be called now (its form, and where it points)."""
    parts = parse(url, allow_http=allow_http)
    if allow_private:
        return
    host = parts.hostname or ""
    for address in await _resolve(host, parts.port or 443):
        if not address_allowed(address):
            raise UrlRefused(f"{host} resolves to {address}, which is not a public address")


async def check_configured(url: str, settings: Settings) -> None:
    """`check` as the settings say: http outside production, private with the opt-in."""
    await check(
        url,
        allow_http=settings.app_env != "production",
        allow_private=settings.webhook_allow_private,
    )


async def _resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        found = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT
        )
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise UrlRefused(f"{host} does not resolve ({exc.__class__.__name__})") from None
    return list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))
