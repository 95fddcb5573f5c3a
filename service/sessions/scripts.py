"""The core's Lua scripts, read from `service/lua/` (the session ones with their library)."""

from __future__ import annotations

from importlib.resources import files

_LUA = files("service.sessions") / "lua"


def session_script(name: str) -> str:
    """A session script, prefixed with `lib.lua` (keys, named arguments, shared helpers)."""
    return (_LUA / "lib.lua").read_text() + "\n" + (_LUA / f"{name}.lua").read_text()


def plain_script(name: str) -> str:
    """A script that stands alone."""
    return (_LUA / f"{name}.lua").read_text()
