"""Real-browser fixtures: headless Chromium, the real API and worker, one context per device."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import ROOT, free_port, write_users
from tests.processes import Process, process_env, running

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1100, "height": 760}
# README's demo users (demo_users.json: user123 and user124, password 1234), so that the
# screenshots (docs/img) show what a newcomer sees; with cheap hashes, as all tests have.
USER, PASSWORD = "user123", "1234"
DEMO_USERS = write_users(json.loads((ROOT / "demo_users.json").read_text())["users"], PASSWORD)
PHONE = {"width": 390, "height": 844}  # an iPhone 14's CSS pixels


@dataclass(frozen=True, slots=True)
class Stack:
    """The API and the worker it points the page at."""

    api: Process
    worker: Process

    @property
    def url(self) -> str:
        return self.api.url + "/"


OpenDevice = Callable[..., Page]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium from Debian's package; missing, the run fails (never skips)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium; "
            "bash .ci/run does this) or point CHROMIUM at a Chromium binary"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def api_only(redis_url: str, tmp_path: Path) -> Iterator[Process]:
    """The API alone, for what needs no live updates; LOGIN_MAX_FAILURES is low."""
    with running(
        "service", redis_url, tmp_path, USERS_FILE=str(DEMO_USERS), LOGIN_MAX_FAILURES="2"
    ) as api:
        yield api


@contextmanager
def running_stack(
    redis_url: str, tmp: Path, *, socket_origins: tuple[str, ...] = (), **env: str
) -> Iterator[Stack]:
    """API and worker with the same extra `env`, the demo users; the worker's port first.

    The worker allows sockets from the API's page, and from `socket_origins` too.
    """
    gateway_port = free_port()
    env = {"USERS_FILE": str(DEMO_USERS), **env}
    with running("service", redis_url, tmp, GATEWAY_PORT=str(gateway_port), **env) as api:
        origins = ",".join((api.url, *socket_origins))
        worker_env = process_env(
            redis_url, GATEWAY_PORT=str(gateway_port), ALLOWED_ORIGINS=origins, **env
        )
        worker = Process("workers", gateway_port, worker_env, tmp / "workers.log").start()
        try:
            yield Stack(api, worker)
        finally:
            worker.stop()


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(redis_url, tmp_path) as started:
        yield started


@pytest.fixture
def open_device(browser: Browser) -> Iterator[OpenDevice]:
    """Open the page as a separate device: its own context (storage) and User-Agent."""
    contexts = []

    def open_page(
        url: str, user_agent: str, phone: bool = False, dark: bool = False, clock: bool = False
    ) -> Page:
        """`clock`: the page's timers and Date are Playwright's, to fast-forward."""
        context = browser.new_context(
            user_agent=user_agent,
            viewport=PHONE if phone else DESKTOP,
            is_mobile=phone,
            has_touch=phone,
            locale="en-US",
            timezone_id="UTC",
            color_scheme="dark" if dark else "light",
        )
        contexts.append(context)
        if clock:
            context.clock.install()
        page = context.new_page()
        page.goto(url)
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[[Page, str], None]:
    """Save a screenshot; under docs/img when SCREENSHOTS=docs/img (so runs don't dirty git)."""
    target = Path(os.environ.get("SCREENSHOTS", "") or tmp_path)
    target = target if target.is_absolute() else ROOT / target
    target.mkdir(parents=True, exist_ok=True)

    def save(page: Page, name: str) -> None:
        page.screenshot(path=target / f"{name}.png", full_page=True)

    return save


class StaticSite:
    """Pages of another origin (a product's front end, or an attacker's), on loopback."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Pages(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?")[0], "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.origin + path


@pytest.fixture
def static_site() -> Iterator[StaticSite]:
    site = StaticSite()
    site.thread.start()
    yield site
    site.server.shutdown()
    site.server.server_close()
    site.thread.join()
