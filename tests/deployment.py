"""The deployment of docs/DEPLOY.md, run for tests: its nginx configuration and its
environment file, in front of a real API process, a real worker process and a small
product API.

Only what cannot be the same on a test machine is replaced: the secrets, the Redis, the
ports, and the public origin (`https://sessionwire.example.com` becomes nginx's own
`http://127.0.0.1:<port>`: the tests do not run TLS).

    def test_something(deployment: Deployment) -> None:
        ... requests to deployment.origin, a socket on deployment.ws ...

The test module registers the fixture with
`from tests.deployment import deployment_fixture  # noqa: F401`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TEST_SECRET, TEST_USERS_FILE, free_port
from tests.nginx import DEPLOYMENT_CONF, Nginx
from tests.processes import Process, process_env
from tests.test_admin_api import ADMIN_TOKEN

DEPLOY_MD = ROOT / "docs" / "DEPLOY.md"
ENV_FILE = "# /etc/sessionwire/sessionwire.env"  # the first line of DEPLOY.md's env block
PUBLIC_ORIGIN = "https://sessionwire.example.com"
PUBLIC_GATEWAY_ORIGIN = "wss://sessionwire.example.com"


def documented_env() -> dict[str, str]:
    """The environment file of docs/DEPLOY.md, as written (comment lines left out)."""
    text = DEPLOY_MD.read_text()
    start = text.index(f"```sh\n{ENV_FILE}\n")
    block = text[start : text.index("```\n", start + 3)].splitlines()[1:]
    pairs = (line.split("=", 1) for line in block if line and not line.startswith("#"))
    return dict(pairs)


def local_env(documented: dict[str, str], origin: str, **local: str) -> dict[str, str]:
    """DEPLOY.md's environment with this machine's `local` values and public `origin`."""
    missing = local.keys() - documented.keys()
    assert not missing, f"DEPLOY.md's environment file has no {sorted(missing)}"
    gateway_origin = "ws" + origin.removeprefix("http")
    env = {
        name: value.replace(PUBLIC_ORIGIN, origin).replace(PUBLIC_GATEWAY_ORIGIN, gateway_origin)
        for name, value in {**documented, **local}.items()
    }
    left = {name: value for name, value in env.items() if "<" in value or "example." in value}
    assert not left, f"settings of DEPLOY.md a test cannot run as written: {left}"
    return env


class ProductApi:
    """The product's own API, as small as it gets: it answers with what nginx passed on."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> ProductApi:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        seen = self.seen

        class Echo(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                view = {"method": self.command, "path": self.path, "headers": dict(self.headers)}
                seen.append(view)
                body = json.dumps(view).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_DELETE = do_GET

            def log_message(self, *args: Any) -> None:
                """Quiet: the tests read `seen`."""

        return Echo


@dataclass(frozen=True, slots=True)
class Deployment:
    proxy: Nginx
    api: Process
    worker: Process
    product: ProductApi

    @property
    def origin(self) -> str:
        """The public origin: nginx's own address."""
        return self.proxy.url

    @property
    def page(self) -> str:
        return self.proxy.url + "/"

    @property
    def ws(self) -> str:
        return self.proxy.ws_url + "/ws"


@contextmanager
def deployed(redis_url: str, tmp: Path, users_file: Path = TEST_USERS_FILE) -> Iterator[Deployment]:
    """nginx with DEPLOY.md's configuration before an API and a worker with its environment."""
    documented = documented_env()
    api_port, gateway_port = free_port(), free_port()
    with ExitStack() as stack:
        product = ProductApi().start()
        stack.callback(product.stop)
        proxy = Nginx(
            DEPLOYMENT_CONF,
            server_name="127.0.0.1",
            api=f"{documented['HOST']}:{api_port}",
            gateway=f"{documented['HOST']}:{gateway_port}",
            app=product.address,
        )
        stack.callback(proxy.remove)
        stack.callback(proxy.stop)
        proxy.start()
        env = local_env(
            documented,
            proxy.url,
            REDIS_URL=redis_url,
            JWT_SECRET=TEST_SECRET,
            ADMIN_TOKEN=ADMIN_TOKEN,
            USERS_FILE=str(users_file),
            PORT=str(api_port),
            GATEWAY_PORT=str(gateway_port),
            METRICS_PORT=str(free_port()),
            GATEWAY_METRICS_PORT=str(free_port()),
        )
        processes = []
        for module, port in (("service", api_port), ("workers", gateway_port)):
            process = Process(module, port, process_env(redis_url, **env), tmp / f"{module}.log")
            stack.callback(process.stop)
            processes.append(process.start())
        yield Deployment(proxy, *processes, product)


@pytest.fixture(name="deployment")
def deployment_fixture(redis_url: str, tmp_path: Path) -> Iterator[Deployment]:
    with deployed(redis_url, tmp_path) as running:
        yield running
