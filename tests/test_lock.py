"""The lock (requirements/, written by scripts/lock) pins everything pyproject.toml asks for.

A fresh machine installs the lock, never "whatever is newest": this keeps the lock true to
pyproject.toml, so a dependency added there without re-locking fails here first.
"""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKS = {"run.txt": ("run",), "test.txt": ("run", "dev"), "bench.txt": ("run", "dev", "bench")}
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s\\;]+)", re.M)


def pinned(name: str) -> dict[str, str]:
    text = (ROOT / "requirements" / name).read_text()
    return {canonicalize_name(n.split("[")[0]): v for n, v in PIN.findall(text)}


def wanted(extras: tuple[str, ...]) -> list[Requirement]:
    project = PYPROJECT["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        found += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return [r for r in found if canonicalize_name(r.name) != "sessionwire"]


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_pins_every_requirement_within_its_range(lock: str) -> None:
    pins = pinned(lock)
    for requirement in wanted(LOCKS[lock]):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version = pins.get(canonicalize_name(requirement.name))
        assert version, f"{requirement.name} is not in requirements/{lock}: bash scripts/lock"
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements/{lock} has {requirement.name}=={version}, outside {requirement}"
        )


def test_every_lock_agrees_on_each_version() -> None:
    widest = pinned("bench.txt")
    for lock in ("run.txt", "test.txt"):
        for name, version in pinned(lock).items():
            assert widest[name] == version, f"{name}: {lock} and bench.txt differ"
