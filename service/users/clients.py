"""Who a client is, for the budgets and the fair shares of sign-in: its address, or the /64
an IPv6 address belongs to."""

from __future__ import annotations

import ipaddress

# One IPv6 subscriber is given at least a /64 (RFC 6177): 2^64 addresses to rotate through,
# so an address of its own per attempt would make every per-address limit void.
IPV6_CLIENT_PREFIX = 64


def client_of(ip: str) -> str:
    """The IPv4 address (an IPv4-mapped IPv6 one too), or the IPv6 /64 as `2001:db8::/64`.

    Anything that is not an address (a Unix socket's empty peer) stands for itself.
    """
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)
