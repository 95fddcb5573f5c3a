"""A login storm: CONCURRENCY clients signing in as fast as the API lets them.

python -m bench.storm API_URL SECONDS CONCURRENCY

Prints the number of sign-ins that succeeded. Like the page and the CLI, a client told to
retry (503 busy, 429) waits the Retry-After it was given.
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp


async def storm(url: str, seconds: float, concurrency: int) -> int:
    done = 0
    deadline = time.monotonic() + seconds

    async def client(n: int) -> None:
        nonlocal done
        body = {"username": "user123", "password": "1234", "device_id": f"storm-{n}"}
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                async with http.post(url + "/login", json=body) as resp:
                    await resp.read()
                if resp.status == 200:
                    done += 1
                elif retry_after := resp.headers.get("Retry-After"):
                    await asyncio.sleep(min(float(retry_after), deadline - time.monotonic()))

    await asyncio.gather(*(client(n) for n in range(concurrency)))
    return done


if __name__ == "__main__":
    logins = asyncio.run(storm(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
    print(logins)
