"""A tiny MaxMind DB writer (format 2.0, https://maxmind.github.io/MaxMind-DB/) for the
tests' own GeoIP databases: an IPv6 tree of 24-bit records, IPv4 under ::/96."""

from __future__ import annotations

import ipaddress
import struct
import time
from pathlib import Path
from typing import Any

METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"
_POINTER, _UTF8, _DOUBLE, _BYTES, _UINT16, _UINT32, _MAP = 1, 2, 3, 4, 5, 6, 7
_UINT64, _ARRAY, _BOOLEAN = 9, 11, 14


def _control(kind: int, size: int) -> bytes:
    if size < 29:
        head, extra = size, b""
    elif size < 285:
        head, extra = 29, bytes([size - 29])
    elif size < 65821:
        head, extra = 30, (size - 285).to_bytes(2, "big")
    else:
        head, extra = 31, (size - 65821).to_bytes(3, "big")
    if kind <= 7:
        return bytes([(kind << 5) | head]) + extra
    return bytes([head, kind - 7]) + extra


def _uint(kind: int, value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return _control(kind, len(raw)) + raw


def encode(value: Any) -> bytes:
    """One value of the data section (no pointers: each entry is written whole)."""
    if isinstance(value, bool):
        return _control(_BOOLEAN, int(value))
    if isinstance(value, str):
        raw = value.encode()
        return _control(_UTF8, len(raw)) + raw
    if isinstance(value, int):
        return _uint(_UINT32 if value < 2**32 else _UINT64, value)
    if isinstance(value, float):
        return _control(_DOUBLE, 8) + struct.pack(">d", value)
    if isinstance(value, dict):
        body = b"".join(encode(k) + encode(v) for k, v in value.items())
        return _control(_MAP, len(value)) + body
    if isinstance(value, list):
        return _control(_ARRAY, len(value)) + b"".join(encode(v) for v in value)
    raise TypeError(type(value))


def write_mmdb(path: Path, networks: dict[str, dict[str, Any]], kind: str = "Test-City") -> Path:
    """A database mapping each network ("81.2.69.0/24", "2a02:a000::/32") to its record."""
    nodes: list[list[Any]] = [[None, None]]  # each record: None, ("node", i) or ("data", offset)
    data = b""
    for network, record in networks.items():
        net = ipaddress.ip_network(network)
        offset, data = len(data), data + encode(record)
        bits = int(net.network_address)  # an IPv4 address is ::a.b.c.d, under ::/96
        length = net.prefixlen if net.version == 6 else net.prefixlen + 96
        node = 0
        for i in range(length):
            bit = (bits >> (127 - i)) & 1
            if i == length - 1:
                nodes[node][bit] = ("data", offset)
                break
            child = nodes[node][bit]
            if child is None:
                nodes.append([None, None])
                child = nodes[node][bit] = ("node", len(nodes) - 1)
            node = child[1]
    count = len(nodes)

    def number(record: Any) -> int:
        if record is None:
            return count
        return record[1] if record[0] == "node" else count + 16 + record[1]

    tree = b"".join(number(a).to_bytes(3, "big") + number(b).to_bytes(3, "big") for a, b in nodes)
    metadata = {
        "node_count": count,
        "record_size": 24,
        "ip_version": 6,
        "database_type": kind,
        "languages": ["en"],
        "binary_format_major_version": 2,
        "binary_format_minor_version": 0,
        "build_epoch": int(time.time()),
        "description": {"en": "sessionwire tests"},
    }
    kinds = {"node_count": _UINT32, "build_epoch": _UINT64}

    def meta_value(key: str, value: Any) -> bytes:
        if isinstance(value, int):
            return _uint(kinds.get(key, _UINT16), value)
        return encode(value)

    meta = _control(_MAP, len(metadata)) + b"".join(
        encode(k) + meta_value(k, v) for k, v in metadata.items()
    )
    path.write_bytes(tree + bytes(16) + data + METADATA_MARKER + meta)
    return path
