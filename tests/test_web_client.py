"""The client library (clients/web/): its own tests under Node, how the API serves it, and
that an install (`pip install .`) ships it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import ROOT

MakeApi = Callable[..., Awaitable[TestClient]]
WEB = ROOT / "clients" / "web"
APP = "https://app.example"


def test_the_library_passes_its_own_tests() -> None:
    """`node --test` as clients/web/README.md says (reconnects, close codes, words, texts)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (bash scripts/setup --test installs nodejs)")
    run = subprocess.run(
        [node, "--test", "test/"], cwd=WEB, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    counts = dict(re.findall(r"^# (tests|pass|fail) (\d+)$", run.stdout, re.MULTILINE))
    assert counts["fail"] == "0" and int(counts["pass"]) >= 25, counts


@pytest.mark.parametrize(
    ("name", "media"),
    [("sessionwire.js", "text/javascript"), ("sessionwire.d.ts", "application/typescript")],
)
async def test_the_api_serves_the_library(make_api: MakeApi, name: str, media: str) -> None:
    api = await make_api(cors_origins=(APP,))
    resp = await api.get(f"/sdk/{name}", headers={"Origin": APP})
    assert resp.status == 200
    assert resp.content_type == media and resp.charset == "utf-8"
    assert await resp.read() == (WEB / name).read_bytes()
    # A page of CORS_ORIGINS may import it: a module from another origin needs this.
    assert resp.headers["Access-Control-Allow-Origin"] == APP
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "ETag" in resp.headers  # revalidated, not fetched whole, on every page load
    other = await api.get(f"/sdk/{name}", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_only_the_library_is_served(make_api: MakeApi) -> None:
    api = await make_api()
    for path in ("/sdk/package.json", "/sdk/test/client.test.js", "/sdk/../web/README.md"):
        assert (await api.get(path)).status == 404, path


def test_an_install_ships_the_library(tmp_path: Path) -> None:
    """What `pip install .` copies (setuptools' build_py, with pyproject's package-data)."""
    build = tmp_path / "lib"
    script = (
        "import sys\nfrom setuptools import setup\n"
        f"sys.argv = ['setup.py', '-q', 'build_py', '--build-lib', {str(build)!r}]\nsetup()\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    shipped = build / "clients" / "web"
    assert sorted(p.name for p in shipped.iterdir()) == ["sessionwire.d.ts", "sessionwire.js"]
    for name in ("sessionwire.js", "sessionwire.d.ts"):
        assert (shipped / name).read_bytes() == (WEB / name).read_bytes()
    # Where the API looks for it (importlib.resources), an install finds it.
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlib.resources import files; print(files('clients') / 'web')",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(build)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.stdout.strip() == str(shipped), where.stderr
