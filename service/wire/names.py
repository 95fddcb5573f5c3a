"""What a name on the wire may look like: usernames and session ids.

A username is part of every key of its user (`{u:<name>}`, see service/sessions/keys.py),
so the rule is strict enough that no name can break out of its hash tag.
"""

from __future__ import annotations

import re

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
# Session ids are secrets.token_urlsafe(16); routes match only ids of this shape.
SESSION_ID = "[A-Za-z0-9_-]{1,64}"


def is_valid_username(name: str) -> bool:
    """A name USERNAME_PATTERN allows as a whole (its `$` would let a final newline by)."""
    return USERNAME_PATTERN.fullmatch(name) is not None
