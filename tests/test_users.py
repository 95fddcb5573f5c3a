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
from typing import Any

import aiohttp
import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from service.settings import ConfigError
from service.users import command as useradmin
from service.users import file as usersfile
from service.users.directory import UserDirectory
from service.users.passwords import PasswordChecker
from tests.conftest import ROOT, TEST_SECRET, free_port, login, wait_until
from tests.deployment import documented_env, local_env
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


# --- a name listed twice (issue 16, finding 2) ---


def listed_twice(path: Path) -> None:
    """alice twice (the first with her password, the second with another), and erik."""
    write_users(path, alice="alice-password", erik="erik-password")
    entries = usersfile.read_entries(path)
    other = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("other-password")
    entries.append({**entries[0], "password_hash": other})
    path.write_text(json.dumps({"users": entries}))


@pytest.mark.parametrize(
    ("args", "typed"),
    [
        (("passwd", "alice"), "pass-word\n"),
        (("remove", "alice"), ""),
        (("add", "dana"), "pass-word\n"),
    ],
)
def test_the_command_refuses_a_file_with_a_name_listed_twice(
    tmp_path: Path, args: tuple[str, ...], typed: str
) -> None:
    path = tmp_path / "users.json"
    listed_twice(path)
    before = path.read_bytes()
    done = command(path, *args, typed=typed)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"python -m service.users {args[0]}: USERS_FILE={str(path)!r} can't be used: "
        "'alice' is listed 2 times"
    ]
    assert path.read_bytes() == before


async def test_the_api_keeps_its_users_when_a_name_is_listed_twice(
    tmp_path: Path, make_api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "users.json"
    write_users(path, alice="alice-password", erik="erik-password")
    api = await make_api(users=UserDirectory.load(path))  # each sign-in looks at the file

    async def status(password: str) -> int:
        resp = await api.post("/login", json={"username": "alice", "password": password})
        return resp.status

    listed_twice(path)
    assert await status("other-password") == 401  # neither entry is taken
    assert await status("alice-password") == 200  # the users read before are kept
    said = [r.getMessage() for r in caplog.records if "listed 2 times" in r.getMessage()]
    assert said == [
        f"USERS_FILE={str(path)!r} can't be used: 'alice' is listed 2 times; "
        "keeping the 2 users read before"
    ]


def test_the_api_does_not_start_on_a_file_with_a_name_listed_twice(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    listed_twice(path)
    env = process_env("redis://127.0.0.1:1/0", USERS_FILE=str(path), PORT=str(free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("'alice' is listed 2 times"), lines


# --- the service's configuration, found as the service finds it (issue 16, finding 10) ---

OPERATOR = ("REDIS_URL", "APP_ENV", "USERS_FILE", "JWT_SECRET", "ADMIN_TOKEN")


def as_an_operator(
    *args: str, typed: str = "", cwd: Path = ROOT, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the command as an operator at a shell would: none of the service's environment
    but what is given (and no development Redis to fall back on, unless given)."""
    environment = {k: v for k, v in process_env("").items() if k not in OPERATOR}
    environment.update({"DEV_REDIS_PORT": str(free_port()), **env})
    return subprocess.run(
        [sys.executable, "-m", "service.users", *args],
        cwd=cwd,
        env=environment,
        input=typed,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )


def deploy_env_file(tmp_path: Path, redis_url: str, users: Path) -> Path:
    """docs/DEPLOY.md's environment file, with this machine's values."""
    env = local_env(
        documented_env(),
        "http://127.0.0.1:9",
        REDIS_URL=redis_url,
        JWT_SECRET=TEST_SECRET,
        ADMIN_TOKEN="a" * 40,
        USERS_FILE=str(users),
    )
    path = tmp_path / "sessionwire.env"
    path.write_text("".join(f"{name}={value}\n" for name, value in env.items()))
    return path


async def signed_in_alice(make_api: Any, path: Path) -> tuple[Any, str]:
    api = await make_api(users=UserDirectory.load(path))
    resp = await api.post("/login", json={"username": "alice", "password": "alice-password"})
    assert resp.status == 200
    return api, (await resp.json())["token"]


async def test_passwd_with_the_services_env_file_signs_out_there(
    tmp_path: Path, redis_url: str, make_api: Any
) -> None:
    users = tmp_path / "users.json"
    write_users(users, alice="alice-password")
    env_file = deploy_env_file(tmp_path, redis_url, users)
    api, token = await signed_in_alice(make_api, users)
    done = await asyncio.to_thread(
        as_an_operator, "passwd", "alice", "--env-file", str(env_file), typed="new-password\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"changed the password of alice in {users}; signed out 1 session(s) at {redis_url}\n"
    )
    assert (await api.get("/me", headers={"Authorization": f"Bearer {token}"})).status == 401
    assert verifies(users, "alice", "new-password")


async def test_the_process_environment_wins_over_the_env_file(
    tmp_path: Path, redis_url: str, make_api: Any
) -> None:
    users = tmp_path / "users.json"
    write_users(users, alice="alice-password")
    env_file = deploy_env_file(tmp_path, "redis://127.0.0.1:1/0", tmp_path / "nowhere.json")
    await signed_in_alice(make_api, users)
    done = await asyncio.to_thread(
        as_an_operator,
        "remove",
        "alice",
        "--env-file",
        str(env_file),
        REDIS_URL=redis_url,
        USERS_FILE=str(users),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(f"signed out 1 session(s) at {redis_url}\n")


def test_production_without_redis_url_refuses(tmp_path: Path, redis_server: Any) -> None:
    users = tmp_path / "users.json"
    write_users(users, alice="alice-password")
    before = users.read_bytes()
    # A Redis answers at the development address: the command must not sign out there.
    done = as_an_operator(
        "passwd",
        "alice",
        "--file",
        str(users),
        typed="new-password\n",
        APP_ENV="production",
        DEV_REDIS_PORT=str(redis_server.port),
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "python -m service.users passwd: REDIS_URL is required when APP_ENV=production "
        "(no embedded Redis, generated secret or demo users there)"
    ]
    assert users.read_bytes() == before


async def test_in_development_it_says_it_used_the_default_redis(
    tmp_path: Path, single_redis_url: str, redis_server: Any, make_api: Any
) -> None:
    users = tmp_path / "users.json"
    write_users(users, alice="alice-password")
    await signed_in_alice(make_api, users)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    done = await asyncio.to_thread(
        as_an_operator,
        "remove",
        "alice",
        "--file",
        str(users),
        cwd=elsewhere,
        DEV_REDIS_PORT=str(redis_server.port),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(
        f"signed out 1 session(s) at redis://127.0.0.1:{redis_server.port}/0, the development "
        "default (REDIS_URL is not set: see --env-file)\n"
    )
    assert list(elsewhere.iterdir()) == [], "it made a development secret it does not use"


def test_an_env_file_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    done = as_an_operator("remove", "alice", "--env-file", str(tmp_path / "missing.env"))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"python -m service.users remove: the environment file {tmp_path / 'missing.env'} "
        "can't be read: No such file or directory"
    ]


def test_an_env_file_is_read_as_scripts_run_reads_dotenv(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    path = tmp_path / "a.env"
    path.write_text(
        "# a comment\n\n"
        f"export USERS_FILE='{users}'\n"
        '  JWT_SECRET="quoted value with spaces and = sign here"\n'
        "APP_ENV=development\n"
        "not a line of the file\n"
    )
    done = as_an_operator("add", "dana", "--env-file", str(path), typed="pass-word\n")
    assert done.returncode == 0, done.stderr
    assert stored(users, "dana") is not None


# Each names a host where nothing answers: were one taken, nothing would be reached.
BAD_URLS = [
    "redis://:p%40ss/w0rd@10.0.0.5:6379/0",  # a / in it: the rest reads as a path
    "redis://:p%40ssw0rd@10.0.0.5:637900/0",
    "rediz://:p%40ssw0rd@10.0.0.5:6379/0",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_redis_url_stops_the_api_without_showing_its_password(url: str) -> None:
    env = process_env(url, PORT=str(free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert_says_no_password(done.stdout + done.stderr)


# No //: redis-py would take it for the default address, 127.0.0.1:6379 (an `add` asks
# no Redis anything, whatever the URL).
@pytest.mark.parametrize("url", [*BAD_URLS, "redis:p%40ssw0rd@10.0.0.5", "redis:///0"])
def test_a_bad_redis_url_stops_the_command_without_showing_its_password(
    tmp_path: Path, url: str
) -> None:
    path = tmp_path / "users.json"
    done = as_an_operator("add", "dana", "--file", str(path), typed="pass-word\n", REDIS_URL=url)
    assert done.returncode == 2, done.stderr
    assert not path.exists()
    assert_says_no_password(done.stdout + done.stderr)


def assert_says_no_password(said: str) -> None:
    assert len(said.strip().splitlines()) == 1, said
    assert "REDIS_URL='" in said and "' is not valid: " in said, said
    for secret in ("p%40ss", "p@ss", "w0rd", "40ss"):
        assert secret not in said, said


def test_a_redis_that_does_not_answer_is_named_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "users.json"
    write_users(path, erik="erik-password")
    monkeypatch.setattr(useradmin, "CONNECT_WAIT", 0.5)
    for name, value in process_env("redis://:p%40ssw0rd@127.0.0.1:1/0").items():
        monkeypatch.setenv(name, value)
    assert useradmin.main(["remove", "erik", "--file", str(path)]) == 1
    said = capsys.readouterr().err
    assert "Redis at redis://***@127.0.0.1:1/0 did not answer" in said
    assert "p%40ss" not in said and "w0rd" not in said


def test_add_takes_an_email(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    done = command(path, "add", "dana", "--email", "dana@example.com", typed="pass-word\n")
    assert done.returncode == 0, done.stderr
    assert stored(path, "dana")["email"] == "dana@example.com"  # type: ignore[index]


@pytest.mark.parametrize(
    "email", ["dana", "dana@", "@example.com", "da na@example.com", "d@e\x1b[2J"]
)
def test_add_refuses_what_is_no_email(tmp_path: Path, email: str) -> None:
    path = tmp_path / "users.json"
    done = command(path, "add", "dana", "--email", email, typed="pass-word\n")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"python -m service.users add: {email!r} is not an email address such as alice@example.com"
    ]
    assert not path.exists()
