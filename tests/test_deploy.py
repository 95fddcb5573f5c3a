"""docs/DEPLOY.md, run: nginx with its configuration in front of a real API and a real
worker started with its environment file, and a product API behind `auth_request`.

The page in a browser, through the same deployment: tests/browser/test_deploy_page.py.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from tests.conftest import free_port, login
from tests.deployment import (
    DEPLOY_MD,
    PUBLIC_GATEWAY_ORIGIN,
    PUBLIC_ORIGIN,
    Deployment,
    ProductApi,
    deployment_fixture,  # noqa: F401  (registers the fixture)
    documented_env,
)
from tests.devices import Device
from tests.nginx import (
    DEPLOYMENT_CONF,
    DOCS_VALUES,
    NginxFactory,
    nginx_fixture,  # noqa: F401  (registers the "nginx" fixture)
)
from workers.gateway import HEARTBEAT

# nginx listens on 127.0.0.1 and reaches the API from there; the client comes from another
# loopback address, so the API's peer (nginx) and the client differ, as on a real network.
CLIENT_IP = "127.0.0.2"
FORGED = {"X-Forwarded-For": "203.0.113.9"}  # what a client may claim: never believed


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A client connecting from CLIENT_IP."""
    connector = aiohttp.TCPConnector(local_addr=(CLIENT_IP, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        yield http


async def call(
    http: aiohttp.ClientSession, deployed: Deployment, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    """One request through nginx; the status and the JSON body (None when it has none)."""
    async with http.request(method, deployed.origin + path, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None) if await resp.read() else None


async def sign_in(http: aiohttp.ClientSession, deployed: Deployment, device: str) -> Any:
    """alice signs in through nginx, with a forged X-Forwarded-For nginx must not believe."""
    return await login(http, url=deployed.origin, headers=FORGED, device_name=device)


def bearer(signed_in: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {signed_in['token']}"}


async def test_a_sign_out_through_nginx_reaches_the_other_device(
    deployment: Deployment, client: aiohttp.ClientSession
) -> None:
    phone = await sign_in(client, deployment, "phone")
    laptop = await sign_in(client, deployment, "laptop")
    device = await Device.connect(client, deployment.ws, phone["token"], origin=deployment.origin)
    assert (await device.ready())["session_id"] == phone["session"]["session_id"]

    target = phone["session"]["session_id"]
    status, _ = await call(
        client, deployment, "DELETE", f"/sessions/{target}", headers=bearer(laptop)
    )
    assert status == 200
    notice = await device.until("session.revoked")
    assert notice["reason"] == "revoked"
    assert notice["by"] == {
        "session_id": laptop["session"]["session_id"],
        "device_name": "laptop",
        "ip": CLIENT_IP,
    }
    assert await device.closed() == 4501

    # A page of another origin gets no socket (ALLOWED_ORIGINS is the public origin).
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await Device.connect(client, deployment.ws, laptop["token"], origin="https://evil.test")
    assert refused.value.status == 403


async def test_the_product_sees_the_user_only_while_the_session_lives(
    deployment: Deployment, client: aiohttp.ClientSession
) -> None:
    signed_in = await sign_in(client, deployment, "laptop")
    headers = {**bearer(signed_in), **FORGED}
    status, seen = await call(client, deployment, "GET", "/app/orders", headers=headers)
    assert status == 200, seen
    assert seen["path"] == "/app/orders"
    assert seen["headers"]["X-Auth-Request-User"] == "alice"
    assert seen["headers"]["X-Auth-Request-Session"] == signed_in["session"]["session_id"]
    assert "Authorization" not in seen["headers"]
    # nginx appended the client's address to what the client claimed.
    assert seen["headers"]["X-Forwarded-For"] == f"203.0.113.9, {CLIENT_IP}"

    assert (await call(client, deployment, "POST", "/logout", headers=bearer(signed_in)))[0] == 200
    status, problem = await call(
        client, deployment, "GET", "/app/orders", headers=bearer(signed_in)
    )
    assert (status, problem["code"]) == (401, "invalid_token")
    assert len(deployment.product.seen) == 1  # nginx answered without asking the product
    status, problem = await call(client, deployment, "GET", "/me", headers=bearer(signed_in))
    assert (status, problem["revoked"]["reason"]) == (401, "logout")


async def test_the_device_list_shows_the_clients_address_not_nginxs(
    deployment: Deployment, client: aiohttp.ClientSession
) -> None:
    signed_in = await sign_in(client, deployment, "laptop")
    assert signed_in["session"]["ip"] == CLIENT_IP
    status, listed = await call(client, deployment, "GET", "/sessions", headers=bearer(signed_in))
    assert status == 200
    assert [s["ip"] for s in listed["sessions"]] == [CLIENT_IP]
    status, log = await call(client, deployment, "GET", "/activity", headers=bearer(signed_in))
    assert [event["session"]["ip"] for event in log["events"]] == [CLIENT_IP]


# --- TLS: DEPLOY.md's lines for it, in the same configuration ---

TLS_HOST = "sessionwire.example.com"


def documented_tls() -> tuple[str, str]:
    """DEPLOY.md's TLS lines for the server block, and its server that redirects to HTTPS."""
    blocks = re.findall(r"```nginx\n(.*?)```\n", DEPLOY_MD.read_text(), re.DOTALL)
    (tls,) = [block for block in blocks if "ssl_certificate" in block]
    (redirect,) = [block for block in blocks if "return 301" in block]
    return tls, redirect


def tls_config(cert: Path, key: Path) -> str:
    """The deployment config with DEPLOY.md's TLS lines in, where DEPLOY.md says."""
    tls, redirect = documented_tls()
    tls = re.sub(r"ssl_certificate +\S+;", f"ssl_certificate {cert};", tls)
    tls = re.sub(r"ssl_certificate_key +\S+;", f"ssl_certificate_key {key};", tls)
    tls = tls.replace("listen 443 ", "listen {{listen}} ")
    assert "    listen {{listen}};\n" in DEPLOYMENT_CONF
    redirect = redirect.replace("listen 80;", "listen {{plain}};")
    return DEPLOYMENT_CONF.replace("    listen {{listen}};\n", tls) + redirect


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for TLS_HOST and its key, as a CA would give them."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TLS_HOST)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(TLS_HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
    key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return cert_path, key_path


async def test_the_tls_lines_serve_https_with_hsts_and_send_http_there(
    tmp_path: Path, nginx: NginxFactory
) -> None:
    cert, key = self_signed(tmp_path)
    product = ProductApi().start()  # stands in for every upstream: it answers 200
    try:
        plain = free_port()
        upstream = product.address
        proxy = nginx(
            tls_config(cert, key),
            server_name=TLS_HOST,
            api=upstream,
            gateway=upstream,
            app=upstream,
            plain=f"127.0.0.1:{plain}",
        )
        trusted = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as http:
            url = f"https://127.0.0.1:{proxy.port}/healthz"
            async with http.get(url, ssl=trusted, server_hostname=TLS_HOST) as resp:
                assert resp.status == 200
                assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
                assert (await resp.json())["headers"]["X-Forwarded-Proto"] == "https"
            async with http.get(
                f"http://127.0.0.1:{plain}/sessions?x=1",
                headers={"Host": TLS_HOST},
                allow_redirects=False,
            ) as resp:
                assert resp.status == 301
                assert resp.headers["Location"] == f"https://{TLS_HOST}/sessions?x=1"
    finally:
        product.stop()


# --- the documents agree with each other ---


def test_the_ws_read_timeout_outlasts_the_gateways_pings() -> None:
    ws_location = DEPLOYMENT_CONF[DEPLOYMENT_CONF.index("location = /ws {") :]
    ws_location = ws_location[: ws_location.index("}")]
    (timeout,) = re.findall(r"proxy_read_timeout (\d+)s;", ws_location)
    assert int(timeout) >= 2 * HEARTBEAT  # a ping may be late once without a cut


def test_the_environment_file_matches_the_nginx_configuration() -> None:
    env = documented_env()
    assert DOCS_VALUES["api"] == f"{env['HOST']}:{env['PORT']}"
    assert DOCS_VALUES["gateway"] == f"{env['HOST']}:{env['GATEWAY_PORT']}"
    assert env["ALLOWED_ORIGINS"] == PUBLIC_ORIGIN == f"https://{DOCS_VALUES['server_name']}"
    assert env["GATEWAY_PUBLIC_URL"] == f"{PUBLIC_GATEWAY_ORIGIN}/ws"
    assert env["TRUSTED_PROXIES"] == "127.0.0.1/32"  # where the example's nginx runs
