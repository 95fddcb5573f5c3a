"""Where the page finds the gateway, the headers that keep the page to its own, and the
client library's files."""

from __future__ import annotations

from urllib.parse import urlsplit

from service.settings import Settings

WILDCARD_HOSTS = ("", "0.0.0.0", "::")
# The client library's files at /sdk/ (clients/web/), with their media types.
SDK_FILES = {"sessionwire.js": "text/javascript", "sessionwire.d.ts": "application/typescript"}


def page_hosts(settings: Settings) -> list[str]:
    """Host names the page may be served under: those of the allowed origins, in order."""
    hosts = [urlsplit(origin).hostname or "" for origin in settings.allowed_origins]
    if not hosts:
        hosts = ["localhost", "127.0.0.1"]
        if settings.host not in WILDCARD_HOSTS:
            hosts.append(settings.host)
    return list(dict.fromkeys(host for host in hosts if host))


def gateway_url(settings: Settings, host_header: str) -> str:
    """The gateway's URL for a page fetched with this Host header.

    GATEWAY_PUBLIC_URL when set; otherwise the page's own host with GATEWAY_PORT, but only
    a host the settings name: a Host header is the client's word, and reflecting it would
    let a forged one point the page's socket (and its token) elsewhere.
    """
    if settings.gateway_public_url:
        return settings.gateway_public_url
    hosts = page_hosts(settings)
    try:
        asked = urlsplit(f"//{host_header}").hostname or ""
    except ValueError:
        asked = ""
    host = asked if asked in hosts else hosts[0]
    return f"ws://{_bracketed(host)}:{settings.gateway_port}/ws"


def reaches_gateway(settings: Settings, host_header: str) -> bool:
    """Whether the API's cookie, set for this Host, is sent to the gateway too.

    Cookies are kept per host name, whatever the port: the gateway on GATEWAY_PORT of the
    page's host gets it, one on another host (GATEWAY_PUBLIC_URL) does not.
    """
    if not settings.gateway_public_url:
        return True
    try:
        asked = urlsplit(f"//{host_header}").hostname or ""
    except ValueError:
        return False
    return urlsplit(settings.gateway_public_url).hostname == asked


def gateway_origins(settings: Settings) -> list[str]:
    """Every origin the page's socket may connect to (for its CSP's connect-src)."""
    if settings.gateway_public_url:
        url = urlsplit(settings.gateway_public_url)
        return [f"{url.scheme}://{url.netloc}"]
    return [f"ws://{_bracketed(host)}:{settings.gateway_port}" for host in page_hosts(settings)]


def page_headers(settings: Settings) -> dict[str, str]:
    """The page's headers: it loads only its own files and talks to the API and gateway."""
    csp = (
        f"default-src 'self'; connect-src 'self' {' '.join(gateway_origins(settings))}; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    return {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
