"""The users file: the directory that follows it, and `python -m service.users`."""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import threading
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from service.settings import ConfigError
from service.users import command as useradmin
from service.users import file as usersfile
from service.users.directory import UserDirectory
from service.users.passwords import PasswordChecker
from tests.conftest import ROOT, free_port, login, wait_until
from tests.devices import Device
from tests.processes import Process, process_env, running
from tests.test_concurrency import pids_answering


def write_users(path: Path, **passwords: str) -> None:
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # cheap, for tests
    entries = [
        {
            "username": name,
            "email": f"{name}@example.com",
            "bio": "",
            "password_hash": hasher.hash(pw),
        }
        for name, pw in passwords.items()
    ]
    usersfile.write_entries(path, entries)


def command_env(redis_url: str) -> dict[str, str]:
    """The command's environment; with no `redis_url`, development with no Redis running.
    Its PASSWORD_HASH_* are the defaults (the tests' cheap ones are the API's)."""
    environment = process_env(redis_url, DEV_REDIS_PORT=str(free_port()))
    environment = {k: v for k, v in environment.items() if not k.startswith("PASSWORD_HASH_")}
    if not redis_url:
        del environment["REDIS_URL"]
    return environment


def command(
    path: Path, *args: str, typed: str = "", redis_url: str = "", **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run the command with no terminal, so it reads the password from stdin; with no
    `redis_url`, as in development with no Redis running; with the default PASSWORD_HASH_*
    unless `extra` says otherwise."""
    return subprocess.run(
        [sys.executable, "-m", "service.users", *args, "--file", str(path)],
        cwd=ROOT,
        env={**command_env(redis_url), **extra},
        input=typed,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # no controlling terminal
    )


def stored(path: Path, username: str) -> dict[str, str] | None:
    entries = json.loads(path.read_text())["users"]
    return next((entry for entry in entries if entry["username"] == username), None)


def verifies(path: Path, username: str, password: str) -> bool:
    entry = stored(path, username)
    return entry is not None and PasswordHasher().verify(entry["password_hash"], password)


# --- the directory ---


async def test_a_directory_checks_passwords(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    write_users(path, dana="pass-word")
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


def test_the_directory_follows_the_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "users.json"
    write_users(path, dana="pass-word")
    users = UserDirectory.load(path)
    assert users.refresh() is False  # unchanged: one stat, nothing read
    write_users(path, dana="pass-word", erik="pass-word")
    assert users.refresh() is True
    assert users.get("erik") is not None
    path.write_text("{broken")
    assert users.refresh() is False
    assert users.get("erik") is not None, "a bad file must keep the users read before"
    assert "keeping the 2 users read before" in caplog.text
    caplog.clear()
    assert users.refresh() is False
    assert caplog.text == "", "a bad file is reported once per change"
    write_users(path, dana="pass-word")
    assert users.refresh(force=True) is True
    assert users.refresh(force=True) is True  # SIGHUP rereads even an unchanged file
    assert users.get("erik") is None


class ChangingChecker(PasswordChecker):
    """Changes the user's password in the file while the first check is being hashed."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self.calls = path, 0

    async def verify(self, stored_hash: str, password: str) -> bool:
        self.calls += 1
        if self.calls == 1:
            write_users(self.path, dana="new-password")
        return await super().verify(stored_hash, password)


async def test_a_password_changed_during_its_check_is_checked_again(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    write_users(path, dana="old-password")
    users, checker = UserDirectory.load(path), ChangingChecker(path)
    assert await users.authenticate("dana", "old-password", checker) is None
    assert checker.calls == 2
    assert await users.authenticate("dana", "new-password", checker) is not None
    checker.close()


def test_hashes_are_argon2id_at_least_owasps_minimum(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    assert command(path, "add", "dana", typed="pass-word\n").returncode == 0
    found = extract_parameters(stored(path, "dana")["password_hash"])  # type: ignore[index]
    assert found.type is Type.ID
    assert found.memory_cost >= 19 * 1024
    assert found.time_cost >= 2


def test_the_command_hashes_with_password_hash_settings(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    chosen = {
        "PASSWORD_HASH_TIME_COST": "2",
        "PASSWORD_HASH_MEMORY_COST": "19456",
        "PASSWORD_HASH_PARALLELISM": "1",
    }
    assert command(path, "add", "dana", typed="pass-word\n", **chosen).returncode == 0
    found = extract_parameters(stored(path, "dana")["password_hash"])  # type: ignore[index]
    assert (found.time_cost, found.memory_cost, found.parallelism) == (2, 19456, 1)
    refused = command(path, "passwd", "dana", typed="pass-word\n", PASSWORD_HASH_TIME_COST="0")
    assert refused.returncode == 2
    assert "PASSWORD_HASH_TIME_COST='0' must be at least 1" in refused.stderr


def test_the_demo_users_are_argon2id() -> None:
    data = json.loads((ROOT / "demo_users.json").read_text())
    names = {u["username"] for u in data["users"]}
    assert {"user123", "user124"} <= names
    for user in data["users"]:
        assert user["password_hash"].startswith("$argon2id$")
        if user["username"] in ("user123", "user124"):
            assert PasswordHasher().verify(user["password_hash"], "1234")


# --- the command ---


def test_add_then_passwd_then_remove(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    added = command(path, "add", "dana", typed="s3cret-pass\n")
    assert added.returncode == 0, added.stderr
    assert "added dana" in added.stdout
    assert "s3cret-pass" not in added.stdout + added.stderr + path.read_text()
    assert verifies(path, "dana", "s3cret-pass")
    assert stored(path, "dana") == {**stored(path, "dana"), "email": "", "bio": ""}  # type: ignore[dict-item]

    changed = command(path, "passwd", "dana", typed="new-pass-word\n")
    assert changed.returncode == 0, changed.stderr
    assert "changed the password of dana" in changed.stdout
    assert "no session to sign out" in changed.stdout  # no Redis runs for this test
    assert verifies(path, "dana", "new-pass-word")

    removed = command(path, "remove", "dana")
    assert removed.returncode == 0, removed.stderr
    assert stored(path, "dana") is None


@pytest.mark.parametrize(
    ("args", "typed", "status", "says"),
    [
        (("add", "dana"), "seven77\n", 2, "at least 8 characters"),
        (("add", "dana"), "", 2, "at least 8 characters"),
        (("add", "bad name}"), "pass-word\n", 2, "a username is"),
        (("add", "dana\n"), "pass-word\n", 2, "a username is"),
        (("add", "erik"), "pass-word\n", 1, "erik is already in"),
        (("passwd", "nobody"), "pass-word\n", 1, "nobody is not in"),
        (("passwd", "erik"), "short\n", 2, "at least 8 characters"),
        (("remove", "nobody"), "", 1, "nobody is not in"),
    ],
)
def test_the_command_refuses_and_changes_nothing(
    tmp_path: Path, args: tuple[str, ...], typed: str, status: int, says: str
) -> None:
    path = tmp_path / "users.json"
    write_users(path, erik="erik-password")
    before = path.read_bytes()
    done = command(path, *args, typed=typed)
    assert done.returncode == status, done.stderr
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before


def at_a_terminal(path: Path, *args: str, typed: list[str]) -> tuple[int, str]:
    """Run the command on a terminal of its own (a pty), answering each prompt in turn;
    its exit status and what the terminal showed."""
    master, slave = pty.openpty()

    def take_the_terminal() -> None:  # a new session whose controlling terminal is the pty
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [sys.executable, "-m", "service.users", *args, "--file", str(path)],
        cwd=ROOT,
        env=command_env(""),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=take_the_terminal,
    )
    os.close(slave)
    shown, answered = b"", 0
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, f"the command showed nothing more: {shown!r}"
            try:
                chunk = os.read(master, 1024)
            except OSError:  # the command ended and closed its terminal
                break
            if not chunk:
                break
            shown += chunk
            prompts = shown.count(b"Password:") + shown.count(b"Repeat:")
            if prompts > answered:  # a new prompt: type the next answer
                os.write(master, typed[answered].encode() + b"\n")
                answered += 1
    finally:
        os.close(master)
    return proc.wait(timeout=30), shown.decode(errors="replace")


@pytest.mark.parametrize(
    ("typed", "accepted"), [(["pass-word", "pass-word"], True), (["pass-word", "pass-wore"], False)]
)
def test_at_a_terminal_the_password_is_asked_twice(
    tmp_path: Path, typed: list[str], accepted: bool
) -> None:
    path = tmp_path / "users.json"
    status, shown = at_a_terminal(path, "add", "dana", typed=typed)
    assert "Password:" in shown and "Repeat:" in shown
    assert "pass-wor" not in shown  # not echoed
    if accepted:
        assert status == 0, shown
        assert stored(path, "dana") is not None
    else:
        assert status == 2 and "the two passwords differ" in shown
        assert not path.exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600])
def test_the_file_keeps_its_mode(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "users.json"
    write_users(path, erik="erik-password")
    path.chmod(mode)
    assert command(path, "passwd", "erik", typed="pass-word\n").returncode == 0
    assert path.stat().st_mode & 0o7777 == mode


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_the_file_keeps_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    write_users(path, erik="erik-password")
    os.chown(path, 65534, 65534)
    assert command(path, "add", "dana", typed="pass-word\n").returncode == 0
    assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534)


def test_a_link_is_kept_and_its_target_replaced(tmp_path: Path) -> None:
    target, link = tmp_path / "real.json", tmp_path / "users.json"
    write_users(target, erik="erik-password")
    link.symlink_to(target)
    assert command(link, "add", "dana", typed="pass-word\n").returncode == 0
    assert link.is_symlink()
    assert stored(target, "dana") is not None


def test_a_crash_while_writing_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "users.json"
    write_users(path, erik="erik-password")
    before = path.read_bytes()

    def crash(fd: int) -> None:
        raise OSError("the disk went away")

    monkeypatch.setattr(usersfile.os, "fsync", crash)
    with pytest.raises(OSError, match="disk went away"):
        usersfile.write_entries(path, [{"username": "dana", "password_hash": "x"}])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["users.json"], "a temporary file was left"


def test_a_reader_never_sees_half_a_file(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    write_users(path, erik="erik-password")
    entries = usersfile.read_entries(path)
    entries += [{**entries[0], "username": f"user{i}", "bio": "x" * 2000} for i in range(200)]
    stop = threading.Event()
    seen: list[int] = []
    broken: list[Exception] = []

    def read_all_the_time() -> None:
        while not stop.is_set():
            try:
                seen.append(len(json.loads(path.read_text())["users"]))
            except (OSError, ValueError) as exc:
                broken.append(exc)

    reader = threading.Thread(target=read_all_the_time)
    reader.start()
    try:
        for n in range(1, 30):
            before = path.stat().st_ino
            usersfile.write_entries(path, entries[: 1 + n * 7])
            # Replaced, never rewritten in place (the new file existed beside the old one).
            assert path.stat().st_ino != before
    finally:
        stop.set()
        reader.join()
    assert seen, "the reader never read"
    assert not broken, broken[:3]


def test_redis_not_answering_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "users.json"
    write_users(path, erik="erik-password")
    before = path.read_bytes()
    monkeypatch.setattr(useradmin, "CONNECT_WAIT", 0.5)
    for name, value in process_env("redis://127.0.0.1:1/0").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "stdin", io.StringIO("pass-word\n"))
    assert useradmin.main(["passwd", "erik", "--file", str(path)]) == 1
    assert "did not answer" in capsys.readouterr().err
    assert path.read_bytes() == before


# --- a running system ---


def rereads(log: str) -> Counter[int]:
    """How often each process said it reread the users file."""
    return Counter(
        int(pid) for pid in re.findall(r"\[(\d+)] service\.users\.directory: reread", log)
    )


async def signed_in_device(
    http: aiohttp.ClientSession, api: Process, worker: Process, user: str, password: str
) -> Device:
    body = await login(http, user, password, url=api.url)
    device = await Device.connect(http, f"ws://127.0.0.1:{worker.port}/ws", body["token"])
    await device.ready()
    return device


async def test_a_running_system_follows_the_users_file(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "users.json"
    write_users(path, alice="alice-password", bob="bob-password")
    with (
        running(
            "service",
            redis_url,
            tmp_path,
            USERS_FILE=str(path),
            WEB_CONCURRENCY="2",
            LOGIN_MAX_FAILURES="100",
        ) as api,
        running("workers", redis_url, tmp_path) as worker,
    ):
        assert api.proc is not None
        children = pids_answering(api, 2)
        # A new connection for each request: each may land on either API process.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            phone = await signed_in_device(http, api, worker, "alice", "alice-password")
            laptop = await signed_in_device(http, api, worker, "alice", "alice-password")
            bob = await signed_in_device(http, api, worker, "bob", "bob-password")

            added = await asyncio.to_thread(
                command, path, "add", "carol", typed="carol-password\n", redis_url=redis_url
            )
            assert added.returncode == 0, added.stderr
            for _ in range(6):
                await login(http, "carol", "carol-password", url=api.url, status=200)

            changed = await asyncio.to_thread(
                command, path, "passwd", "alice", typed="alice-new-pass\n", redis_url=redis_url
            )
            assert changed.returncode == 0, changed.stderr
            assert "signed out 2 session(s)" in changed.stdout
            assert changed.stderr.count(" of alice ended: password_changed, by -") == 2
            for device in (phone, laptop):
                notice = await device.until("session.revoked")
                assert (notice["reason"], notice["by"]) == ("password_changed", None)
            for _ in range(6):
                await login(http, "alice", "alice-password", url=api.url, status=401)
                await login(http, "alice", "alice-new-pass", url=api.url, status=200)

            removed = await asyncio.to_thread(command, path, "remove", "bob", redis_url=redis_url)
            assert removed.returncode == 0, removed.stderr
            assert removed.stderr.count(" of bob ended: admin, by -") == 1
            notice = await bob.until("session.revoked")
            assert (notice["reason"], notice["by"]) == ("admin", None)
            await login(http, "bob", "bob-password", url=api.url, status=401)

        # Each API process rereads the file by itself, and again on SIGHUP.
        wait_until(lambda: set(rereads(api.log())) == children, 5, "not every process reread")
        before = rereads(api.log())
        api.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: all(rereads(api.log())[pid] > before[pid] for pid in children),
            5,
            "SIGHUP did not make every process reread the file",
        )
        # A bad file is logged by each, and the users read before stay.
        path.write_text("{not json")
        kept = re.compile(r"\[(\d+)\] service\.users\.directory: .*keeping the 2 users read before")
        wait_until(lambda: set(map(int, kept.findall(api.log()))) == children, 5, "no error")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            for _ in range(6):
                await login(http, "carol", "carol-password", url=api.url, status=200)
    assert "Traceback" not in api.log()
