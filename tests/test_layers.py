"""The import rule: each layer imports only the layers below it (see service/__init__.py).

foundation (settings, clock, backoff, envfile) <- wire <- engine <- sessions <- users <- runtime <-
api; `workers/` may use every layer of `service/` but the API and the users (the sign-in
machinery); `clients/` know only the wire. aiohttp (the server) stays in runtime, api and
workers. Read from the source, imports inside functions included.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import ROOT

# Each part of our code, its layer; a part may import itself and lower layers only.
LAYERS = {
    "service": 0,  # the package's own __init__ only
    "service.settings": 0,
    "service.clock": 0,
    "service.backoff": 0,
    "service.envfile": 0,
    "service.wire": 1,
    "service.engine": 2,
    "service.sessions": 3,
    "service.users": 4,
    "service.events": 4,
    "service.ssf": 4,
    "service.runtime": 5,
    "service.api": 6,
    "service.__main__": 7,
}
# Parts outside the layers, and what of ours each may import.
WORKERS_MAY_NOT = ("service.api", "service.users", "service.__main__", "clients")
CLIENTS_MAY = ("service.wire", "clients")
SERVER_ONLY = ("aiohttp",)  # below the runtime layer, not even aiohttp's client
SERVER_ALLOWED_FROM = 5
OURS = ("service", "workers", "clients")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str) -> Iterator[str]:
    """Every module an import statement of `source` names (`from a import b` names a.b
    as well, since b may be a module)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def part_of(module: str) -> str | None:
    """The layer part a module of `service` belongs to (None: it is in none)."""
    if module == "service":
        return module
    for part in sorted(LAYERS, key=len, reverse=True):
        if part != "service" and within(module, (part,)):
            return part
    return None


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(module: str, source: str) -> list[str]:
    """What is wrong with the imports of `module` (whose code is `source`)."""
    found = []
    part = part_of(module) if module.startswith("service") else None
    if module.startswith("service") and part is None:
        return [f"{module} is in no layer (add it to LAYERS)"]
    for imported in sorted(set(imports_of(source)) - set(OURS)):  # a bare package names nothing
        ours = within(imported, OURS)
        target = part_of(imported) if imported.startswith("service") else None
        if module.startswith("workers") and within(imported, WORKERS_MAY_NOT):
            found.append(f"{module} imports {imported}: the worker never loads it")
        elif module.startswith("clients") and ours and not within(imported, CLIENTS_MAY):
            found.append(f"{module} imports {imported}: a client knows only the wire")
        elif part is not None and ours and not imported.startswith("service"):
            found.append(f"{module} imports {imported}: service never imports {imported}")
        elif part and target and target != part and LAYERS[target] >= LAYERS[part]:
            found.append(
                f"{module} (layer {LAYERS[part]}) imports {imported} (layer {LAYERS[target]})"
            )
        if (
            part is not None
            and LAYERS[part] < SERVER_ALLOWED_FROM
            and within(imported, SERVER_ONLY)
        ):
            found.append(f"{module} imports {imported}: aiohttp only from runtime up")
    return found


def tree_violations(root: Path) -> list[str]:
    found = []
    for top in OURS:
        for path in sorted((root / top).rglob("*.py")):
            found += violations(module_name(path, root), path.read_text())
    return found


def test_every_import_runs_down_the_layers() -> None:
    assert tree_violations(ROOT) == []


def test_the_rule_catches_an_import_that_runs_up(tmp_path: Path) -> None:
    (tmp_path / "service" / "sessions").mkdir(parents=True)
    (tmp_path / "workers").mkdir()
    (tmp_path / "clients").mkdir()
    (tmp_path / "service" / "sessions" / "store.py").write_text(
        "from service.api.routes import routes\nimport aiohttp\n"
    )
    (tmp_path / "service" / "clock.py").write_text("def f():\n    from service import wire\n")
    (tmp_path / "workers" / "gateway.py").write_text("from service.users import passwords\n")
    (tmp_path / "clients" / "cli.py").write_text("from service.sessions import keys\n")
    (tmp_path / "service" / "extra.py").write_text("")
    assert tree_violations(tmp_path) == [
        "service.clock (layer 0) imports service.wire (layer 1)",
        "service.extra is in no layer (add it to LAYERS)",
        "service.sessions.store imports aiohttp: aiohttp only from runtime up",
        "service.sessions.store (layer 3) imports service.api.routes (layer 6)",
        "service.sessions.store (layer 3) imports service.api.routes.routes (layer 6)",
        "workers.gateway imports service.users: the worker never loads it",
        "workers.gateway imports service.users.passwords: the worker never loads it",
        "clients.cli imports service.sessions: a client knows only the wire",
        "clients.cli imports service.sessions.keys: a client knows only the wire",
    ]


def test_the_worker_loads_no_sign_in_machinery() -> None:
    """Importing the worker must not load argon2, the limiter or device tokens."""
    probe = (
        "import sys, workers.app\n"
        "unwanted = ('argon2', 'service.users', 'service.api')\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(unwanted))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == []
