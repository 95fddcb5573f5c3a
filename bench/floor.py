"""The physical floor of a connect, for the storm benchmark to stand beside the gateway.

    python -m bench.floor PORT

A uvloop server that answers each WebSocket handshake with a hand-written 101 and one
text frame (`ready`), and then holds the connection: the least a gateway can do per
device (accept, read the request, write the answer) on this machine, with no HTTP parser,
no token, no Redis. Bench use only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys

import uvloop

from service.runtime.process import LISTEN_BACKLOG

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
READY = b'{"type":"ready","session_id":"floor","username":"floor"}'


class Handshake(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        if self.buffer is None:
            return  # frames from the client after the handshake: ignored
        self.buffer += data
        head, sep, _ = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        self.buffer = None
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.transport.write(  # type: ignore[attr-defined]
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: sessionwire.v1"
            b"\r\n\r\n" + bytes([0x81, len(READY)]) + READY
        )


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Handshake, "127.0.0.1", port, backlog=LISTEN_BACKLOG)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
