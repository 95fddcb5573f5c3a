"""A minimal WebSocket client for load generation: the handshake, frames in, pongs out.

Real devices are other machines; on this 2-core box the load generator shares the CPU
with what it measures, so it should cost as little as it can. aiohttp's client spends
about 500 µs of CPU per connect; this one a fraction of that. Bench use only: no
extensions, no fragmentation, text and control frames.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


class RawSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int, token: str) -> RawSocket:
        """Open /ws with the token as subprotocol; raise ConnectionError unless 101."""
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: sessionwire.v1, bearer.{token}\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        return cls(reader, writer)

    async def text(self) -> str | None:
        """The next text frame, answering pings on the way; None once the server closes."""
        while True:
            opcode, payload = await self._frame()
            if opcode == OP_TEXT:
                return payload.decode()
            if opcode == OP_PING:
                self._send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                return None

    def close(self) -> None:
        self.writer.close()

    async def _frame(self) -> tuple[int, bytes]:
        try:
            first, second = await self.reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return first & 0x0F, await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return OP_CLOSE, b""

    def _send(self, opcode: int, payload: bytes) -> None:
        """Client frames are masked (RFC 6455); an all-zero mask keeps the bytes as they are."""
        self.writer.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
