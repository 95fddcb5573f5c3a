"""Where a session's address is: GEOIP_DB, a MaxMind-format database (GeoLite2 City or
Country, IPinfo Lite), looked up once at sign-in and stored with the session.

No database, an unreadable one, or no entry for the address: no location, never an error.
Addresses of this network (loopback, private, link-local, CGNAT, ULA) say so, database or
not: no database knows where they are.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import maxminddb
from aiohttp import web

from service.wire.names import shown_only

log = logging.getLogger(__name__)

CGNAT = ipaddress.ip_network("100.64.0.0/10")
MAX_NAME = 100
NO_LOCATION: dict[str, str] = {}
THIS_NETWORK = {"loc": "net"}


def is_this_network(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv4Address) and address in CGNAT)
    )


class GeoIp:
    """Opened by `ctx` (an aiohttp cleanup context), never at import time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.reader: maxminddb.Reader | None = None
        self._failed = False

    async def ctx(self, app: web.Application) -> AsyncIterator[None]:
        if self.path:
            try:
                self.reader = maxminddb.open_database(self.path)
                meta = self.reader.metadata()
                log.info(
                    "GEOIP_DB %s: %s, %d nodes", self.path, meta.database_type, meta.node_count
                )
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
                log.warning(
                    "GEOIP_DB %s is unreadable (%s): sessions get no location", self.path, exc
                )
        yield
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def _open(self) -> None:
        try:
            self.reader = maxminddb.open_database(self.path)
            kind = self.reader.metadata().database_type
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            log.warning("GEOIP_DB %s is unreadable (%s): no session has a location", self.path, exc)
            return
        log.info("GEOIP_DB %s (%s): sessions get a location", self.path, kind)

    def locate(self, ip: str) -> dict[str, str]:
        """The session record's location fields for `ip` (see records.StoredSession)."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return NO_LOCATION
        if is_this_network(address):
            return THIS_NETWORK
        if self.reader is None:
            return NO_LOCATION
        try:
            found = self.reader.get(address)
        except (ValueError, maxminddb.InvalidDatabaseError) as exc:
            if not self._failed:  # once: a broken file would say so on every sign-in
                self._failed = True
                log.warning("GEOIP_DB lookup failed (%s): sessions get no location", exc)
            return NO_LOCATION
        return _fields(found) if isinstance(found, Mapping) else NO_LOCATION


def _fields(found: Mapping[str, Any]) -> dict[str, str]:
    """GeoLite2's nested names (English), or IPinfo's flat strings."""
    country = found.get("country")
    if isinstance(country, Mapping):  # MaxMind: {"country": {"iso_code", "names": {...}}}
        subdivisions = found.get("subdivisions")
        first = subdivisions[0] if isinstance(subdivisions, list) and subdivisions else {}
        fields = {
            "loc_country": _english(country),
            "loc_cc": _text(country.get("iso_code")),
            "loc_region": _english(first),
            "loc_city": _english(found.get("city")),
        }
    else:  # IPinfo Lite: {"country": "Germany", "country_code": "DE", ...}
        fields = {
            "loc_country": _text(country),
            "loc_cc": _text(found.get("country_code")),
            "loc_region": _text(found.get("region")),
            "loc_city": _text(found.get("city")),
        }
    if not any(fields.values()):
        return NO_LOCATION
    return {"loc": "geo", **fields}


def _english(node: object) -> str:
    if not isinstance(node, Mapping):
        return ""
    names = node.get("names")
    return _text(names.get("en")) if isinstance(names, Mapping) else ""


def _text(value: object) -> str:
    """A name as shown to users; the database's file is trusted, its content checked."""
    return shown_only(value)[:MAX_NAME] if isinstance(value, str) else ""
