"""Raw HTTP over a socket, for what client libraries refuse to send (bytes that aren't UTF-8)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

WAIT = 10.0
UPGRADE = {  # the headers of a WebSocket handshake, but for the token
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(
    port: int, method: str, path: str, headers: dict[str, bytes], body: bytes = b""
) -> RawResponse:
    """Send one request with header values given as bytes; read the answer to the close."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    if body:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        answer = await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()
    head, _, rest = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in header_lines if ": " in line)
    return RawResponse(int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()}, rest)
