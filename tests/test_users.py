"""The users file and `python -m service.users add NAME`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import VerificationError

from service.passwords import PasswordChecker
from service.settings import ConfigError
from service.users import UserDirectory, set_password
from tests.conftest import ROOT


def add_user(path: Path, username: str, typed: str) -> subprocess.CompletedProcess[str]:
    """Run the command with no terminal, so getpass reads the password from stdin."""
    return subprocess.run(
        [sys.executable, "-m", "service.users", "add", username, "--file", str(path)],
        cwd=ROOT,
        input=typed,
        capture_output=True,
        text=True,
        timeout=30,
        start_new_session=True,  # no controlling terminal
    )


def test_set_password_adds_then_updates(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    assert set_password(path, "dana", "first-pass") is True
    assert set_password(path, "erik", "second-pass") is True
    assert set_password(path, "dana", "changed-pass") is False
    data = json.loads(path.read_text())
    assert [u["username"] for u in data["users"]] == ["dana", "erik"]
    hasher = PasswordHasher()
    dana = data["users"][0]
    assert hasher.verify(dana["password_hash"], "changed-pass")
    with pytest.raises(VerificationError):
        hasher.verify(dana["password_hash"], "first-pass")
    assert "changed-pass" not in path.read_text()


def test_hashes_are_argon2id_at_least_owasps_minimum(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    set_password(path, "dana", "pass-word")
    stored = json.loads(path.read_text())["users"][0]["password_hash"]
    assert stored.startswith("$argon2id$")
    found = extract_parameters(stored)
    assert found.type is Type.ID
    assert found.memory_cost >= 19 * 1024
    assert found.time_cost >= 2


def test_the_demo_users_are_argon2id() -> None:
    data = json.loads((ROOT / "demo_users.json").read_text())
    names = {u["username"] for u in data["users"]}
    assert {"user123", "user124"} <= names
    for user in data["users"]:
        assert user["password_hash"].startswith("$argon2id$")
        if user["username"] in ("user123", "user124"):
            assert PasswordHasher().verify(user["password_hash"], "1234")


async def test_a_directory_checks_passwords(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    set_password(path, "dana", "pass-word")
    users, checker = UserDirectory.load(path), PasswordChecker()
    user = await users.authenticate("dana", "pass-word", checker)
    assert user is not None and user.username == "dana"
    assert await users.authenticate("dana", "wrong", checker) is None
    assert await users.authenticate("nobody", "pass-word", checker) is None
    assert users.get("nobody") is None
    checker.close()


async def test_a_corrupt_stored_hash_is_a_failed_check(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": [{"username": "x", "password_hash": "not-a-hash"}]}))
    checker = PasswordChecker()
    assert await UserDirectory.load(path).authenticate("x", "anything", checker) is None
    checker.close()


@pytest.mark.parametrize("content", [None, "not json", '{"users": [{"username": 1}]}', "[]"])
def test_a_bad_users_file_is_a_config_error(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "users.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match="USERS_FILE"):
        UserDirectory.load(path)


def test_the_command_adds_a_user(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    done = add_user(path, "dana", "s3cret-pass\ns3cret-pass\n")
    assert done.returncode == 0, done.stderr
    assert "added dana" in done.stdout
    assert "s3cret-pass" not in done.stdout + done.stderr
    stored = json.loads(path.read_text())["users"][0]
    assert stored["username"] == "dana"
    assert PasswordHasher().verify(stored["password_hash"], "s3cret-pass")
    again = add_user(path, "dana", "new-pass\nnew-pass\n")
    assert again.returncode == 0
    assert "updated dana" in again.stdout


@pytest.mark.parametrize(
    ("username", "typed"),
    [("dana", "one-pass\nother-pass\n"), ("dana", "abc\nabc\n"), ("bad name}", "pw-pw\npw-pw\n")],
)
def test_the_command_refuses(tmp_path: Path, username: str, typed: str) -> None:
    path = tmp_path / "users.json"
    done = add_user(path, username, typed)
    assert done.returncode == 2
    assert not path.exists()
