"""One typed settings object, read once from the environment (12-factor)."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_REDIS_HOST = "127.0.0.1"
# API and worker must sign and verify with one secret, so the generated one is kept on disk.
DEV_SECRET_FILE = ".sessionwire/dev-jwt-secret"
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_PROCESSES = 256
# What production must name itself: the development stand-ins (an embedded Redis, a
# generated secret, the demo users) must never serve it by accident.
PRODUCTION_REQUIRES = ("REDIS_URL", "JWT_SECRET", "USERS_FILE")


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message is one line."""


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str | None = field(default=None, repr=False)  # it may hold a password
    # "auto": ask the server at start (INFO cluster); "yes"/"no" force the client kind.
    redis_cluster: str = "auto"
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    jwt_secret_generated: bool = False
    jwt_issuer: str = "sessionwire"
    app_env: str = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    gateway_port: int = 8001
    # Where the page finds the gateway; empty means "same host as the page, GATEWAY_PORT".
    gateway_public_url: str = ""
    allowed_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[IpNetwork, ...] = ()
    session_idle_timeout: int = 3600
    session_max_age: int = 7 * 24 * 3600
    session_touch_interval: int = 60
    max_sessions_per_user: int = 10
    login_max_failures: int = 5
    login_failure_window: int = 300
    max_tombstones_per_user: int = 100
    # A request's headers and body must arrive within this many seconds.
    request_timeout: int = 10
    # Open WebSockets one session may hold on one worker process.
    max_sockets_per_session: int = 3
    users_file: str = "demo_users.json"
    log_level: str = "INFO"
    # "uvloop" when it is installed (a dependency on Linux), else asyncio's own loop.
    event_loop: str = "uvloop"
    dev_redis_port: int = 6379
    # The product's back end calls /admin/... with it; empty turns the admin API off.
    admin_token: str = field(default="", repr=False)
    # Origins whose pages may call the API from the browser (CORS); none by default.
    cors_origins: tuple[str, ...] = ()
    # Processes sharing PORT (the API) and GATEWAY_PORT (the worker), with SO_REUSEPORT.
    web_concurrency: int = 1
    gateway_concurrency: int = 1
    # argon2id parameters of new hashes; a stored hash with others is upgraded at sign-in.
    # argon2-cffi's defaults (RFC 9106's low-memory profile), above OWASP's minimum.
    password_hash_time_cost: int = 3
    password_hash_memory_cost: int = 65536  # KiB
    password_hash_parallelism: int = 4
    # "text" for people, "json" (one object per line) for log shippers.
    log_format: str = "text"
    # Metrics on a port of their own (and off the public one): the API's and the worker's.
    metrics_port: int | None = None
    gateway_metrics_port: int | None = None
    # Browser sign-ins keep the session in an HttpOnly cookie: "auto" (when the request comes
    # from a browser page), "always" (every /login; no token leaves by it) or "never".
    auth_cookie: str = "auto"
    # A session younger than this many seconds may not end the user's older ones (0: off).
    fresh_session_guard: int = 0
    # Events out (docs/EVENTS.md): how long the outbox keeps an event, whatever receivers do.
    events_retention: int = 7 * 24 * 3600
    # Webhook URLs may reach loopback, private and link-local addresses (tests, a LAN).
    webhook_allow_private: bool = False
    # An endpoint whose every message has failed for this long is disabled.
    webhook_disable_after: int = 5 * 24 * 3600
    # Seconds between a message's attempts (Standard Webhooks' schedule); jittered.
    # A MaxMind-format .mmdb (GeoLite2 City, IPinfo Lite): sessions get a location; empty: none.
    geoip_db: str = ""
    # Presence (docs/PRESENCE.md): a worker reports its sockets every PRESENCE_REFRESH
    # seconds; a socket it stops reporting (a crashed worker) is offline after PRESENCE_TTL.
    # At most one online/offline notice per session per PRESENCE_NOTICE_INTERVAL seconds.
    presence_ttl: int = 15
    presence_refresh: float = 5.0
    presence_notice_interval: float = 5.0
    webhook_retry_schedule: tuple[float, ...] = (
        0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400,
    )  # fmt: skip

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or f"redis://{DEFAULT_REDIS_HOST}:{self.dev_redis_port}/0"

    @property
    def origins(self) -> frozenset[str]:
        """Origins allowed to open the WebSocket; defaults to the API's own addresses."""
        if self.allowed_origins:
            return frozenset(self.allowed_origins)
        return frozenset(
            f"http://{host}:{self.port}" for host in ("localhost", "127.0.0.1", self.host)
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default os.environ); raise ConfigError on a bad value.

        Each variable is the upper-case name of its field, whose default it falls back to.
        """
        env = os.environ if env is None else env
        read = _Reader(env)
        app_env = read("APP_ENV", str, choices=("development", "production", "test"))
        secret = env.get("JWT_SECRET", "").strip()
        if secret and len(secret) < 32:
            raise ConfigError("JWT_SECRET must be at least 32 characters")
        if app_env == "production":
            _require_explicit(env)
        admin_token = env.get("ADMIN_TOKEN", "").strip()
        if admin_token and len(admin_token) < 32:  # the message never shows a secret
            raise ConfigError("ADMIN_TOKEN must be at least 32 characters")
        idle = read("SESSION_IDLE_TIMEOUT", int, minimum=1)
        generated = not secret
        secret = secret or _dev_secret(Path(env.get("DEV_SECRET_FILE", DEV_SECRET_FILE)))
        return cls(
            redis_url=read("REDIS_URL", _redis_url, shown=redacted_url),
            redis_cluster=read("REDIS_CLUSTER", str.lower, choices=("auto", "yes", "no")),
            jwt_issuer=read("JWT_ISSUER", str),
            app_env=app_env,
            host=read("HOST", str),
            port=read("PORT", int, minimum=1, maximum=65535),
            gateway_port=read("GATEWAY_PORT", int, minimum=1, maximum=65535),
            gateway_public_url=read("GATEWAY_PUBLIC_URL", _ws_url),
            allowed_origins=read("ALLOWED_ORIGINS", _origins),
            trusted_proxies=read("TRUSTED_PROXIES", _networks),
            session_idle_timeout=idle,
            session_max_age=read("SESSION_MAX_AGE", int, minimum=1),
            # Below the idle timeout, or a session in use would expire between two writes.
            session_touch_interval=read(
                "SESSION_TOUCH_INTERVAL",
                int,
                default=min(_DEFAULTS["session_touch_interval"], idle // 2),
                minimum=0,
                maximum=idle - 1,
            ),
            max_sessions_per_user=read("MAX_SESSIONS_PER_USER", int, minimum=1),
            login_max_failures=read("LOGIN_MAX_FAILURES", int, minimum=1),
            login_failure_window=read("LOGIN_FAILURE_WINDOW", int, minimum=1),
            max_tombstones_per_user=read("MAX_TOMBSTONES_PER_USER", int, minimum=1),
            request_timeout=read("REQUEST_TIMEOUT", int, minimum=1, maximum=3600),
            max_sockets_per_session=read("MAX_SOCKETS_PER_SESSION", int, minimum=1),
            users_file=read("USERS_FILE", str),
            log_level=read("LOG_LEVEL", str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR")),
            event_loop=read("EVENT_LOOP", str.lower, choices=("uvloop", "asyncio")),
            dev_redis_port=read("DEV_REDIS_PORT", int, minimum=1, maximum=65535),
            jwt_secret=secret,
            jwt_secret_generated=generated,
            admin_token=admin_token,
            cors_origins=read("CORS_ORIGINS", _origins),
            web_concurrency=read("WEB_CONCURRENCY", int, minimum=1, maximum=MAX_PROCESSES),
            gateway_concurrency=read("GATEWAY_CONCURRENCY", int, minimum=1, maximum=MAX_PROCESSES),
            **_password_hashing(read),
            log_format=read("LOG_FORMAT", str.lower, choices=("text", "json")),
            **_metrics_ports(read),
            auth_cookie=read("AUTH_COOKIE", str.lower, choices=("auto", "always", "never")),
            fresh_session_guard=read("FRESH_SESSION_GUARD", int, minimum=0),
            events_retention=read("EVENTS_RETENTION", int, minimum=1),
            webhook_allow_private=read("WEBHOOK_ALLOW_PRIVATE", _flag),
            webhook_disable_after=read("WEBHOOK_DISABLE_AFTER", int, minimum=1),
            webhook_retry_schedule=read("WEBHOOK_RETRY_SCHEDULE", _schedule),
            geoip_db=read("GEOIP_DB", str),
            **_presence(read),
        )

    def warn_about_defaults(self) -> None:
        """Log what a developer should know about the values in force."""
        if self.app_env != "test" and not _owasp_enough(  # tests hash cheaply on purpose
            self.password_hash_time_cost,
            self.password_hash_memory_cost,
            self.password_hash_parallelism,
        ):
            log.warning(
                "PASSWORD_HASH_* are below OWASP's minimum for argon2id (19 MiB with t=2, or "
                "an equivalent of its table): stolen hashes would be cheap to crack"
            )
        if self.jwt_secret_generated:
            log.warning(
                "JWT_SECRET is not set: using a generated development secret from "
                "DEV_SECRET_FILE (default %s; shared by the processes started here; set "
                "JWT_SECRET in production)",
                DEV_SECRET_FILE,
            )


_DEFAULTS: dict[str, object] = {
    f.name: f.default for f in dataclasses.fields(Settings) if f.default is not dataclasses.MISSING
}
_UNSET = object()


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def __call__(
        self,
        name: str,
        parse: Callable[[str], T],
        *,
        default: object = _UNSET,
        minimum: int | None = None,
        maximum: int | None = None,
        choices: tuple[str, ...] = (),
        shown: Callable[[str], str] = str,
    ) -> T:
        """The variable parsed; a bad value is a ConfigError showing `shown(value)`."""
        raw = self.env.get(name, "").strip()
        if not raw:
            return _DEFAULTS[name.lower()] if default is _UNSET else default  # type: ignore[return-value]
        setting = f"{name}={shown(raw)!r}"
        try:
            value = parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{setting} is not valid: {exc}") from None
        if choices and value not in choices:
            raise ConfigError(f"{setting} must be one of {', '.join(choices)}")
        if minimum is not None and value < minimum:  # type: ignore[operator]
            raise ConfigError(f"{setting} must be at least {minimum}")
        if maximum is not None and value > maximum:  # type: ignore[operator]
            raise ConfigError(f"{setting} must be at most {maximum}")
        return value


def _require_explicit(env: Mapping[str, str]) -> None:
    """Raise one ConfigError naming every variable production needs and `env` lacks."""
    missing = [name for name in PRODUCTION_REQUIRES if not env.get(name, "").strip()]
    if missing:
        names = " and ".join(", ".join(missing).rsplit(", ", 1))
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(
            f"{names} {verb} required when APP_ENV=production "
            "(no embedded Redis, generated secret or demo users there)"
        )


# OWASP's argon2id configurations (Password Storage Cheat Sheet), each as strong as the
# next: (memory in KiB, time cost), all with p=1. More parallelism never makes them weaker.
OWASP_ARGON2ID = ((47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5))


def _owasp_enough(time_cost: int, memory_kib: int, parallelism: int) -> bool:
    return any(memory_kib >= m and time_cost >= t for m, t in OWASP_ARGON2ID)


def _password_hashing(read: _Reader) -> dict[str, int]:
    """PASSWORD_HASH_*: what argon2 itself accepts (memory at least 8 KiB per lane)."""
    values = {
        "password_hash_time_cost": read("PASSWORD_HASH_TIME_COST", int, minimum=1, maximum=100),
        "password_hash_memory_cost": read(
            "PASSWORD_HASH_MEMORY_COST", int, minimum=8, maximum=4 * 1024 * 1024
        ),
        "password_hash_parallelism": read("PASSWORD_HASH_PARALLELISM", int, minimum=1, maximum=64),
    }
    if values["password_hash_memory_cost"] < 8 * values["password_hash_parallelism"]:
        raise ConfigError("PASSWORD_HASH_MEMORY_COST must be at least 8 KiB per lane (parallelism)")
    return values


def _metrics_ports(read: _Reader) -> dict[str, int | None]:
    """METRICS_PORT (the API's) and GATEWAY_METRICS_PORT (the worker's), each off the port
    it serves the public on, and apart from each other (both processes may share a host)."""
    ports = {
        "metrics_port": read("METRICS_PORT", int, minimum=1, maximum=65535),
        "gateway_metrics_port": read("GATEWAY_METRICS_PORT", int, minimum=1, maximum=65535),
    }
    public = {
        "METRICS_PORT": read("PORT", int, minimum=1, maximum=65535),
        "GATEWAY_METRICS_PORT": read("GATEWAY_PORT", int, minimum=1, maximum=65535),
    }
    for name, value in zip(public, ports.values(), strict=True):
        if value is not None and value in public.values():
            raise ConfigError(f"{name}={value} must differ from PORT and GATEWAY_PORT")
    if ports["metrics_port"] is not None and ports["metrics_port"] == ports["gateway_metrics_port"]:
        raise ConfigError("METRICS_PORT and GATEWAY_METRICS_PORT must differ")
    return ports


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())


def _origins(raw: str) -> tuple[str, ...]:
    """Browser origins; one that can never equal an Origin header is a mistake to report."""
    for origin in _csv(raw):
        url = urlsplit(origin)
        if url.scheme not in ("http", "https") or not url.netloc or url.path or url.query:
            raise ValueError(f"{origin!r} is not an origin such as https://app.example")
    return _csv(raw)


def _ws_url(raw: str) -> str:
    if urlsplit(raw).scheme not in ("ws", "wss") or not urlsplit(raw).netloc:
        raise ValueError("it must be a ws:// or wss:// URL")
    return raw


def _redis_url(raw: str) -> str:
    """The URL, if it is one of Redis; the ValueError never quotes it (a password in it
    with a character that should be percent-encoded can land anywhere, the port too)."""
    url = urlsplit(raw)
    # No host would mean 127.0.0.1:6379 to redis-py: whatever Redis runs there.
    named = url.hostname if url.scheme in ("redis", "rediss") else url.path
    if url.scheme not in ("redis", "rediss", "unix") or not named:
        raise ValueError("it must be a redis://host, rediss://host or unix:///path URL")
    try:
        _ = url.port
    except ValueError:
        raise ValueError(
            "its port is not a number from 0 to 65535 (percent-encode the password's "
            "reserved characters: @ : / ? # [ ] % as %40 %3A %2F %3F %23 %5B %5D %25)"
        ) from None
    return raw


_PASSWORD_PARAMETER = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def redacted_url(url: str) -> str:
    """A Redis URL as it may be shown: whatever precedes the host (user and password) and
    a `password` parameter become ***."""
    scheme, sep, rest = url.partition("://")
    if not sep:  # not a URL at all: anything before an @ may be a password
        scheme, rest = "", url
    _, at, place = rest.rpartition("@")
    shown = f"{scheme}{sep}***@{place}" if at else url
    return _PASSWORD_PARAMETER.sub(r"\1***", shown)


def _flag(raw: str) -> bool:
    if raw.lower() not in ("0", "1", "true", "false", "yes", "no"):
        raise ValueError("it must be 1 or 0")
    return raw.lower() in ("1", "true", "yes")


def _schedule(raw: str) -> tuple[float, ...]:
    """Delays in seconds before each attempt, the first one's included (`0,5,300`)."""
    delays = tuple(float(part) for part in _csv(raw))
    if not delays or any(not 0 <= d <= 7 * 24 * 3600 for d in delays):
        raise ValueError("it must be comma-separated seconds, each from 0 to 604800")
    return delays


def _networks(raw: str) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(part, strict=False) for part in _csv(raw))


def _dev_secret(path: Path) -> str:
    """Read the development secret at `path`, creating it atomically if it is missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as tmp:
            tmp.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp.name, path)  # atomic: a racing process keeps whichever came first
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp.name)
    return path.read_text().strip()


def _presence(read: _Reader) -> dict[str, Any]:
    """The refresh must come well within the TTL, or a live socket would blink offline."""
    ttl = read("PRESENCE_TTL", int, minimum=2)
    refresh = read("PRESENCE_REFRESH", float)
    if not 0 < refresh <= ttl / 2:
        raise ConfigError(f"PRESENCE_REFRESH={refresh} must be above 0 and at most PRESENCE_TTL/2")
    notice = read("PRESENCE_NOTICE_INTERVAL", float)
    if not 0 <= notice <= 3600:  # NaN fails this too
        raise ConfigError(f"PRESENCE_NOTICE_INTERVAL={notice} must be from 0 to 3600")
    return {"presence_ttl": ttl, "presence_refresh": refresh, "presence_notice_interval": notice}
