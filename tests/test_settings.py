"""Settings from the environment: every value checked, a bad one is one clear line."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from service.settings import ConfigError, Settings

SECRET = "s" * 40
ADMIN_TOKEN = "a" * 32


def from_env(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"DEV_SECRET_FILE": str(tmp_path / "secret"), **env})


def test_defaults(tmp_path: Path) -> None:
    settings = from_env(tmp_path)
    assert settings.redis_url is None
    assert settings.effective_redis_url == "redis://127.0.0.1:6379/0"
    assert settings.app_env == "development"
    assert settings.port == 8000
    assert settings.gateway_port == 8001
    assert settings.session_idle_timeout == 3600
    assert settings.session_max_age == 7 * 24 * 3600
    assert settings.session_touch_interval == 60
    assert settings.max_sessions_per_user == 10
    assert settings.login_max_failures == 5
    assert settings.login_failure_window == 300
    assert settings.jwt_issuer == "sessionwire"
    assert settings.users_file == "demo_users.json"
    assert settings.log_level == "INFO"
    assert settings.trusted_proxies == ()
    assert (settings.web_concurrency, settings.gateway_concurrency) == (1, 1)
    assert (settings.auth_cookie, settings.fresh_session_guard) == ("auto", 0)


def test_values_are_parsed(tmp_path: Path) -> None:
    settings = from_env(
        tmp_path,
        REDIS_URL="redis://:pw@redis.example:6380/2",
        JWT_SECRET=SECRET,
        APP_ENV="production",
        HOST="0.0.0.0",
        PORT=" 9000 ",
        GATEWAY_PORT="9001",
        ALLOWED_ORIGINS="https://a.example/, https://b.example",
        TRUSTED_PROXIES="10.0.0.0/8, 192.168.1.1",
        SESSION_IDLE_TIMEOUT="30",
        SESSION_MAX_AGE="600",
        MAX_SESSIONS_PER_USER="3",
        LOGIN_MAX_FAILURES="7",
        LOGIN_FAILURE_WINDOW="60",
        JWT_ISSUER="me",
        GATEWAY_PUBLIC_URL="wss://example.com/ws",
        USERS_FILE="users.json",
        LOG_LEVEL="debug",
        DEV_REDIS_PORT="7000",
        ADMIN_TOKEN=f" {ADMIN_TOKEN} ",
        CORS_ORIGINS="https://app.example/, http://localhost:5173",
        REQUEST_TIMEOUT="5",
        MAX_SOCKETS_PER_SESSION="2",
        WEB_CONCURRENCY="4",
        GATEWAY_CONCURRENCY="2",
        AUTH_COOKIE="Always",
        FRESH_SESSION_GUARD="86400",
    )
    assert settings.redis_url == "redis://:pw@redis.example:6380/2"
    assert settings.jwt_secret == SECRET
    assert not settings.jwt_secret_generated
    assert settings.app_env == "production"
    assert (settings.host, settings.port, settings.gateway_port) == ("0.0.0.0", 9000, 9001)
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.1/32"),
    )
    assert settings.session_idle_timeout == 30
    assert settings.session_touch_interval == 15  # well inside the idle timeout
    assert settings.session_max_age == 600
    assert settings.max_sessions_per_user == 3
    assert (settings.login_max_failures, settings.login_failure_window) == (7, 60)
    assert settings.jwt_issuer == "me"
    assert settings.gateway_public_url == "wss://example.com/ws"
    assert settings.users_file == "users.json"
    assert settings.log_level == "DEBUG"
    assert settings.dev_redis_port == 7000
    assert settings.admin_token == ADMIN_TOKEN
    assert settings.cors_origins == ("https://app.example", "http://localhost:5173")
    assert (settings.request_timeout, settings.max_sockets_per_session) == (5, 2)
    assert (settings.web_concurrency, settings.gateway_concurrency) == (4, 2)
    assert (settings.auth_cookie, settings.fresh_session_guard) == ("always", 86400)
    assert SECRET not in repr(settings)
    assert ADMIN_TOKEN not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "0"),
        ("PORT", "70000"),
        ("PORT", "80.5"),
        ("GATEWAY_PORT", "-1"),
        ("DEV_REDIS_PORT", "x"),
        ("SESSION_IDLE_TIMEOUT", "0"),
        ("SESSION_IDLE_TIMEOUT", "1h"),
        ("SESSION_MAX_AGE", "-5"),
        ("SESSION_TOUCH_INTERVAL", "-1"),
        ("SESSION_TOUCH_INTERVAL", "3600"),  # as long as the default idle timeout
        ("MAX_SESSIONS_PER_USER", "0"),
        ("LOGIN_MAX_FAILURES", "none"),
        ("LOGIN_FAILURE_WINDOW", "0"),
        ("REQUEST_TIMEOUT", "0"),
        ("REQUEST_TIMEOUT", "1.5"),
        ("MAX_SOCKETS_PER_SESSION", "0"),
        ("APP_ENV", "staging"),
        ("LOG_LEVEL", "LOUD"),
        ("EVENT_LOOP", "twisted"),
        ("REDIS_CLUSTER", "maybe"),
        ("MAX_TOMBSTONES_PER_USER", "0"),
        ("WEB_CONCURRENCY", "0"),
        ("WEB_CONCURRENCY", "many"),
        ("GATEWAY_CONCURRENCY", "-2"),
        ("GATEWAY_CONCURRENCY", "1000"),
        ("TRUSTED_PROXIES", "10.0.0.0/33"),
        ("TRUSTED_PROXIES", "proxy.example"),
        ("JWT_SECRET", "short"),
        ("ADMIN_TOKEN", "x" * 31),
        ("CORS_ORIGINS", "*"),
        ("CORS_ORIGINS", "https://app.example, app.example"),
        ("CORS_ORIGINS", "https://app.example/path"),
        ("ALLOWED_ORIGINS", "app.example"),
        ("ALLOWED_ORIGINS", "https://a.example, *"),
        ("ALLOWED_ORIGINS", "https://a.example/app"),
        ("GATEWAY_PUBLIC_URL", "https://example.com/ws"),
        ("REDIS_URL", "localhost:6379"),
        ("REDIS_URL", "http://redis.example"),
        ("REDIS_URL", "redis://"),
        ("REDIS_URL", "redis:///0"),  # no host: redis-py would take 127.0.0.1:6379
        ("REDIS_URL", "redis:10.0.0.5:6379"),
        ("REDIS_URL", "redis://host:port/0"),
        ("REDIS_URL", "redis://host:99999"),
        ("AUTH_COOKIE", "sometimes"),
        ("FRESH_SESSION_GUARD", "-1"),
        ("FRESH_SESSION_GUARD", "24h"),
        ("PRESENCE_TTL", "1"),
        ("PRESENCE_REFRESH", "8"),  # more than half the TTL (15): sockets would blink
        ("PRESENCE_REFRESH", "0"),
        ("PRESENCE_REFRESH", "nan"),
        ("PRESENCE_NOTICE_INTERVAL", "-1"),
        ("PRESENCE_NOTICE_INTERVAL", "nan"),
        ("PRESENCE_NOTICE_INTERVAL", "soon"),
    ],
)
def test_a_bad_value_is_one_clear_line(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_env(tmp_path, **{name: value})
    message = str(caught.value)
    assert name in message
    assert "\n" not in message


def test_a_short_admin_token_is_not_shown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        from_env(tmp_path, ADMIN_TOKEN="hunter2-hunter2")
    assert str(caught.value) == "ADMIN_TOKEN must be at least 32 characters"


def test_admin_api_and_cors_are_off_by_default(tmp_path: Path) -> None:
    settings = from_env(tmp_path)
    assert (settings.admin_token, settings.cors_origins) == ("", ())


PRODUCTION = {"REDIS_URL": "redis://redis.internal:6379/0", "JWT_SECRET": SECRET}


@pytest.mark.parametrize("missing", ["REDIS_URL", "JWT_SECRET", "USERS_FILE"])
def test_production_requires_what_development_makes_up(tmp_path: Path, missing: str) -> None:
    env = {**PRODUCTION, "USERS_FILE": "/etc/sessionwire/users.json", "APP_ENV": "production"}
    env[missing] = " "  # empty counts as unset
    with pytest.raises(ConfigError) as caught:
        from_env(tmp_path, **env)
    assert str(caught.value).startswith(f"{missing} is required when APP_ENV=production")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "secret").exists()


def test_production_names_everything_missing_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        from_env(tmp_path, APP_ENV="production")
    assert str(caught.value).startswith(
        "REDIS_URL, JWT_SECRET and USERS_FILE are required when APP_ENV=production"
    )


def test_production_with_everything_named(tmp_path: Path) -> None:
    settings = from_env(tmp_path, APP_ENV="production", USERS_FILE="users.json", **PRODUCTION)
    assert (settings.redis_url, settings.users_file) == (PRODUCTION["REDIS_URL"], "users.json")
    assert not settings.jwt_secret_generated


def test_development_generates_one_shared_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = from_env(tmp_path), from_env(tmp_path)
    assert first.jwt_secret_generated
    assert len(first.jwt_secret) >= 32
    assert first.jwt_secret == second.jwt_secret == (tmp_path / "secret").read_text().strip()
    first.warn_about_defaults()
    assert "JWT_SECRET is not set" in caplog.text
    assert first.jwt_secret not in caplog.text


def test_empty_values_mean_the_default(tmp_path: Path) -> None:
    settings = from_env(tmp_path, PORT="", REDIS_URL="", LOG_LEVEL="  ")
    assert settings.port == 8000
    assert settings.redis_url is None
    assert settings.log_level == "INFO"


def test_origins_default_to_the_apis_own_addresses(tmp_path: Path) -> None:
    settings = from_env(tmp_path, PORT="8123")
    assert "http://localhost:8123" in settings.origins
    assert "http://127.0.0.1:8123" in settings.origins


@pytest.mark.parametrize(("idle", "touch"), [("1", 0), ("2", 1), ("30", 15), ("3600", 60)])
def test_the_default_touch_interval_is_inside_the_idle_timeout(
    tmp_path: Path, idle: str, touch: int
) -> None:
    assert from_env(tmp_path, SESSION_IDLE_TIMEOUT=idle).session_touch_interval == touch


def test_hashing_logs_and_metrics_ports(tmp_path: Path) -> None:
    default = from_env(tmp_path)
    assert (
        default.password_hash_time_cost,
        default.password_hash_memory_cost,
        default.password_hash_parallelism,
    ) == (3, 65536, 4)  # argon2-cffi's own, above OWASP's minimum
    assert default.log_format == "text"
    assert (default.metrics_port, default.gateway_metrics_port) == (None, None)
    chosen = from_env(
        tmp_path,
        PASSWORD_HASH_TIME_COST="2",
        PASSWORD_HASH_MEMORY_COST="19456",
        PASSWORD_HASH_PARALLELISM="1",
        LOG_FORMAT="JSON",
        METRICS_PORT="9100",
        GATEWAY_METRICS_PORT="9101",
    )
    assert (chosen.password_hash_time_cost, chosen.password_hash_memory_cost) == (2, 19456)
    assert chosen.log_format == "json"
    assert (chosen.metrics_port, chosen.gateway_metrics_port) == (9100, 9101)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"PASSWORD_HASH_TIME_COST": "0"}, "PASSWORD_HASH_TIME_COST='0' must be at least 1"),
        (
            {"PASSWORD_HASH_MEMORY_COST": "16", "PASSWORD_HASH_PARALLELISM": "4"},
            "PASSWORD_HASH_MEMORY_COST must be at least 8 KiB per lane (parallelism)",
        ),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml' must be one of text, json"),
        ({"METRICS_PORT": "8000"}, "METRICS_PORT=8000 must differ from PORT and GATEWAY_PORT"),
        (
            {"GATEWAY_METRICS_PORT": "9000", "PORT": "9000"},
            "GATEWAY_METRICS_PORT=9000 must differ from PORT and GATEWAY_PORT",
        ),
        (
            {"METRICS_PORT": "9100", "GATEWAY_METRICS_PORT": "9100"},
            "METRICS_PORT and GATEWAY_METRICS_PORT must differ",
        ),
    ],
)
def test_bad_hashing_logs_and_metrics_settings(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(says)}$"):
        from_env(tmp_path, **env)


def test_weak_hashing_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    weak = from_env(tmp_path, PASSWORD_HASH_TIME_COST="1", PASSWORD_HASH_MEMORY_COST="8192")
    weak.warn_about_defaults()
    assert "below OWASP's minimum" in caplog.text
    caplog.clear()
    from_env(
        tmp_path, PASSWORD_HASH_TIME_COST="1", PASSWORD_HASH_MEMORY_COST="47104"
    ).warn_about_defaults()
    assert "OWASP" not in caplog.text
