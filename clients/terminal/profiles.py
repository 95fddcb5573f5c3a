"""The `sessionwire` client's stored sign-ins: one 0600 file per profile, and its device tokens.

A profile (`<profile>.json`) holds the session's token and is forgotten when the session
ends; its device tokens (`<profile>.devices.json`, per username) outlive sign-outs, so the
device keeps its own failure budget (docs/SECURITY.md, "Known devices").
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

PROFILE_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ProfileError(Exception):
    """A profile that cannot be used; the message is one line for the user."""


def home() -> Path:
    if custom := os.environ.get("SESSIONWIRE_HOME"):
        return Path(custom)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "sessionwire"


def profile_path(profile: str) -> Path:
    if not PROFILE_PATTERN.match(profile):
        raise ProfileError(f"bad profile name {profile!r}: use letters, digits, '.', '_', '-'")
    return home() / f"{profile}.json"


def device_tokens_path(profile: str) -> Path:
    return profile_path(profile).with_suffix(".devices.json")


def load_device_tokens(profile: str) -> dict[str, str]:
    try:
        tokens = json.loads(device_tokens_path(profile).read_text())
    except (OSError, ValueError):
        return {}
    return tokens if isinstance(tokens, dict) else {}


def save_device_token(profile: str, username: str, token: str) -> None:
    write_secret(device_tokens_path(profile), {**load_device_tokens(profile), username: token})


def save_profile(profile: str, data: dict[str, Any]) -> None:
    write_secret(profile_path(profile), data)


def load_profile(profile: str) -> dict[str, Any]:
    try:
        return json.loads(profile_path(profile).read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        raise ProfileError(
            f"not signed in (profile {profile!r}): run '{login_command(profile)}'"
        ) from None


def login_command(profile: str) -> str:
    """The command that signs this profile in (the default profile needs no option)."""
    return "sessionwire login" if profile == "default" else f"sessionwire --profile {profile} login"


def forget_profile(profile: str) -> None:
    """Drop the session's token; the device tokens stay (see the module's docstring)."""
    profile_path(profile).unlink(missing_ok=True)


def write_secret(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a token is a secret
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
