"""Environment files: `NAME=value` lines, read as `scripts/run` reads `.env`.

One line per variable, optionally after `export`, its value optionally in one pair of
quotes; other lines (comments, blank ones) are skipped. systemd's `EnvironmentFile=` reads
the files of docs/DEPLOY.md alike. A variable set in the process environment always wins
over the file, as it does for the service.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)")


class EnvFileError(Exception):
    """The file can't be read; the message is one line."""


def read_env_file(path: str | Path) -> dict[str, str]:
    """The variables the file sets; EnvFileError if it can't be read."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise EnvFileError(f"the environment file {path} can't be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise EnvFileError(f"the environment file {path} is not UTF-8 text") from None
    values = {}
    for line in text.splitlines():
        if found := _LINE.fullmatch(line):
            name, value = found.groups()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            values[name] = value
    return values


def environment_with(path: str | Path, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The process environment, with what the file sets for variables it leaves unset."""
    return {**read_env_file(path), **environ}
