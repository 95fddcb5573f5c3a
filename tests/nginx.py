"""A real nginx in front of test processes: render a config, run it on a free port, stop it.

Needs the `nginx` binary with the auth_request module (Debian: `apt-get install nginx-light`,
which pulls in `nginx`). Everything the process writes stays in its own prefix directory.

    def test_something(nginx):
        proxy = nginx(DEPLOYMENT_CONF, server_name="localhost", api=..., gateway=..., app=...)
        ... requests to proxy.url ...

The test module registers the fixture with `from tests.nginx import nginx_fixture  # noqa: F401`.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

DOCS_EXAMPLE = ROOT / "docs" / "nginx" / "sessionwire.conf.example"

# `{{name}}` cannot clash with nginx syntax: `$name` is a variable, `{` opens a block.
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")

# The main context the fixture wraps around an http-level config. Run modes (`daemon off`,
# `master_process off`) are given with -g on the command line instead.
MAIN_CONF = """\
# Written by tests/nginx.py: every path nginx writes to is inside the prefix.
pid {{prefix}}/nginx.pid;
error_log {{prefix}}/logs/error.log info;
worker_processes 1;

events {
    worker_connections 256;
}

http {
    access_log {{prefix}}/logs/access.log;
    # Debian's compiled-in temp paths are under /var/lib/nginx: keep them all here instead.
    client_body_temp_path {{prefix}}/temp/client_body;
    proxy_temp_path {{prefix}}/temp/proxy;
    fastcgi_temp_path {{prefix}}/temp/fastcgi;
    uwsgi_temp_path {{prefix}}/temp/uwsgi;
    scgi_temp_path {{prefix}}/temp/scgi;

{{http}}
}
"""

# The deployment config: one origin for the page, the API, the gateway's /ws and a product
# API behind forward auth. An http-level file, as in conf.d/. The same text, with example
# addresses, is docs/nginx/sessionwire.conf.example (render_docs_example writes it).
DEPLOYMENT_CONF = """\
# Sessionwire behind nginx: the page, the API, the WebSocket gateway and your product's
# own API (protected by Sessionwire sessions) on ONE origin.
#
# Copy into /etc/nginx/conf.d/ (it is an http-level file), adapt server_name, listen and
# the upstream addresses, then `nginx -t && nginx -s reload`. Needs the auth_request
# module (Debian's `nginx` and `nginx-light` packages have it: check `nginx -V`).
#
# Run Sessionwire with, for this layout (docs/DEPLOY.md has the whole environment file):
#   TRUSTED_PROXIES=127.0.0.1/32       believe X-Forwarded-For from this nginx (API, worker)
#   GATEWAY_PUBLIC_URL=wss://<host>/ws  the page's WebSocket goes through this nginx too
#   ALLOWED_ORIGINS=https://<host>      the page's origin, for the gateway's Origin check
#   HOST=127.0.0.1                      so clients cannot go around nginx
#
# Kept in sync with DEPLOYMENT_CONF in tests/nginx.py, whose tests run it in a real nginx
# in front of a real API and worker (tests/test_deploy.py, tests/browser/test_deploy_page.py).

# WebSocket: "Connection: upgrade" only when the client asked to upgrade.
map $http_upgrade $sw_connection_upgrade {
    default upgrade;
    ""      close;
}

# The code of the edge's own 401 (nginx cannot pass on the body of the auth subrequest).
map $http_authorization $sw_unauthorized_code {
    ""      missing_token;
    default invalid_token;
}

upstream sessionwire_api {
    server {{api}};
    # Every protected request costs one /auth/verify call: reuse connections for them.
    keepalive 16;
}

upstream sessionwire_gateway {
    server {{gateway}};
}

# Your product's own API, served only to signed-in devices.
upstream product_app {
    server {{app}};
}

server {
    listen {{listen}};
    server_name {{server_name}};
    # For HTTPS (what production wants: tokens travel in headers), instead of the listen
    # above (docs/DEPLOY.md, "TLS", also redirects port 80):
    #   listen 443 ssl;
    #   ssl_certificate     /etc/ssl/certs/sessionwire.pem;
    #   ssl_certificate_key /etc/ssl/private/sessionwire.key;
    #   add_header Strict-Transport-Security "max-age=31536000" always;
    # $scheme below then says https. If a load balancer terminates TLS in front of this
    # nginx instead, pass its X-Forwarded-Proto on rather than $scheme.

    server_tokens off;

    # Note: a location that sets any proxy_set_header inherits none from outside it, so each
    # location below lists all the headers it needs.

    # The page (/, /static/, /config) and the API (/login, /logout, /logout-all, /me,
    # /sessions..., /activity, /admin/..., /openapi.json, /healthz, /readyz).
    location / {
        proxy_pass http://sessionwire_api;
        # HTTP/1.1 with no Connection header, so the upstream keepalive above works.
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        # Appends the peer to what the client sent; the API, with TRUSTED_PROXIES, reads
        # the list from the right, so a forged first entry is never believed.
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        # The API's own problem+json answers (401, 413, 422, 429, 503) reach the client as
        # they are: no proxy_intercept_errors, and the default 1m body limit lets the API
        # answer its own 413 for bodies over 64 KiB.
    }

    # Only nginx asks /auth/verify (through the internal location below).
    location = /auth/verify {
        return 404;
    }

    # Prometheus scrapes the API's port directly; the numbers are not for the internet.
    location = /metrics {
        return 404;
    }

    # The gateway's WebSocket.
    location = /ws {
        proxy_pass http://sessionwire_gateway;
        # An upgrade needs HTTP/1.1 and the hop-by-hop Upgrade/Connection headers passed on.
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $sw_connection_upgrade;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        # The gateway pings every 25 s; without traffic for this long nginx would cut the
        # socket (the default is 60 s, too close to a missed ping or two).
        proxy_read_timeout 75s;
        proxy_send_timeout 75s;
        # A revocation notice must reach the device at once, not sit in a buffer.
        proxy_buffering off;
    }

    # Your product's API: only for requests whose Bearer token is a live Sessionwire
    # session. Each request is checked (one Redis round trip): a revoked token fails at once.
    location /app/ {
        auth_request /_sessionwire_verify;
        # Who the API said the caller is (empty when it did not say, e.g. no email).
        auth_request_set $sw_user $upstream_http_x_auth_request_user;
        auth_request_set $sw_email $upstream_http_x_auth_request_email;
        auth_request_set $sw_session $upstream_http_x_auth_request_session;

        proxy_pass http://product_app;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        # Setting these replaces whatever the client sent under the same names, and an empty
        # value drops the header: a client cannot forge its identity. (Names with
        # underscores are dropped by nginx anyway; other X-Auth-Request-* names are passed
        # through, so the product must trust these three only.)
        proxy_set_header X-Auth-Request-User $sw_user;
        proxy_set_header X-Auth-Request-Email $sw_email;
        proxy_set_header X-Auth-Request-Session $sw_session;
        # The product learns who the caller is from the headers above; it does not need the
        # session's token (which would then end up in its logs). Delete this line if your
        # back end calls Sessionwire as the user.
        proxy_set_header Authorization "";

        # auth_request answers 401 itself (copying the API's WWW-Authenticate); turn that
        # into a problem+json like the API's own. Any other failure of the check (API down,
        # 503 from it) is a 500 from auth_request: say 503 and "retry" instead. The
        # product's own errors pass through untouched (no proxy_intercept_errors).
        error_page 401 = @sessionwire_unauthorized;
        error_page 500 = @sessionwire_unavailable;
    }

    # The forward-auth check: GET /auth/verify on the API with the client's Authorization.
    location = /_sessionwire_verify {
        internal;
        proxy_pass http://sessionwire_api/auth/verify;
        # The subrequest would otherwise use the client's method (POST, DELETE...), which
        # /auth/verify does not answer, and carry its body.
        proxy_method GET;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header Authorization $http_authorization;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Original-URI $request_uri;
        proxy_set_header X-Original-Method $request_method;
        # Fail fast rather than hold the client: a failed check becomes a 503 below.
        proxy_connect_timeout 2s;
        proxy_read_timeout 5s;
        # No proxy_cache here on purpose: a revoked token must stop working at once.
    }

    # The body of the API's 401 cannot be passed on (auth_request reads only the status
    # and headers), so say what the edge knows: no token, or a token that is not valid.
    # `GET /me` with the same token gives the exact reason (e.g. revoked, by whom).
    location @sessionwire_unauthorized {
        internal;
        default_type application/problem+json;
        add_header Cache-Control "no-store" always;
        return 401 '{"type":"about:blank","title":"Unauthorized","status":401,"code":"$sw_unauthorized_code","detail":"a valid Sessionwire session token is required; GET /me with it says why not"}';
    }

    location @sessionwire_unavailable {
        internal;
        default_type application/problem+json;
        add_header Retry-After 1 always;
        add_header Cache-Control "no-store" always;
        return 503 '{"type":"about:blank","title":"Service Unavailable","status":503,"code":"auth_unavailable","detail":"the session check is unavailable; retry"}';
    }
}
"""  # noqa: E501  (the JSON bodies are one line each)

# The example addresses of docs/nginx/sessionwire.conf.example.
DOCS_VALUES = {
    "listen": "80",
    "server_name": "sessionwire.example.com",
    "api": "127.0.0.1:8000",
    "gateway": "127.0.0.1:8001",
    "app": "127.0.0.1:9000",
}


def render(template: str, **values: object) -> str:
    """Fill `{{name}}` placeholders; a missing or unused value is an error, not a silent typo."""
    names = set(_PLACEHOLDER.findall(template))
    missing, unused = names - values.keys(), values.keys() - names
    if missing or unused:
        raise ValueError(f"placeholders missing: {sorted(missing)}, unused: {sorted(unused)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def render_docs_example() -> str:
    return render(DEPLOYMENT_CONF, **DOCS_VALUES)


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if not found:
        pytest.fail(
            "nginx is not installed (apt-get install -y --no-install-recommends nginx-light)"
        )
    return found


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Nginx:
    """One nginx process with its own prefix directory, serving an http-level config.

    `config` is rendered with `values` plus `listen` (127.0.0.1:<free port>) and `prefix`,
    where the template uses them.
    """

    def __init__(self, config: str, **values: object) -> None:
        self.port = free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="sw-nginx-"))
        for sub in ("logs", "temp"):
            (self.prefix / sub).mkdir()
        known = {"listen": f"127.0.0.1:{self.port}", "prefix": self.prefix}
        if known.keys() & values.keys():
            raise ValueError("listen and prefix are the fixture's own placeholders")
        used = set(_PLACEHOLDER.findall(config))
        http = render(config, **{k: v for k, v in known.items() if k in used}, **values)
        self.conf_path = self.prefix / "nginx.conf"
        self.conf_path.write_text(render(MAIN_CONF, prefix=self.prefix, http=http))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        # One process in the foreground: its pid is all there is to stop, and no worker can
        # outlive it. -e sends errors from before the config is read to the log as well.
        return [
            nginx_binary(),
            "-p", f"{self.prefix}/",
            "-c", str(self.conf_path),
            "-e", str(self.prefix / "logs" / "error.log"),
            "-g", "daemon off; master_process off;",
        ]  # fmt: skip

    def start(self, timeout: float = 10) -> Nginx:
        with (self.prefix / "logs" / "stderr.log").open("ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not accepts_connections(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.logs()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not listen within {timeout} s:\n{self.logs()}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 5) -> int | None:
        """SIGTERM (fast shutdown: open WebSockets would hold up SIGQUIT), then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def error_log(self) -> str:
        return self._read("logs/error.log")

    def access_log(self) -> str:
        return self._read("logs/access.log")

    def logs(self) -> str:
        return f"{self._read('logs/stderr.log')}{self.error_log()}"

    def _read(self, name: str) -> str:
        path = self.prefix / name
        return path.read_text(errors="replace") if path.exists() else ""

    def remove(self) -> None:
        shutil.rmtree(self.prefix, ignore_errors=True)


NginxFactory = Callable[..., Nginx]


@pytest.fixture(name="nginx")
def nginx_fixture() -> Iterator[NginxFactory]:
    """`nginx(config, **values)` starts an nginx for this test; all are stopped after it."""
    started: list[Nginx] = []

    def start(config: str, **values: object) -> Nginx:
        server = Nginx(config, **values)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
        server.remove()
