"""What a name on the wire may look like: usernames, session ids, names people read.

A username is part of every key of its user (`{u:<name>}`, see service/sessions/keys.py),
so the rule is strict enough that no name can break out of its hash tag. A device name is
free text that other devices show, so it must hold nothing a terminal or a page would act
on instead of showing.
"""

from __future__ import annotations

import re

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
# Session ids are secrets.token_urlsafe(16); routes match only ids of this shape.
SESSION_ID = "[A-Za-z0-9_-]{1,64}"


def is_valid_username(name: str) -> bool:
    """A name USERNAME_PATTERN allows as a whole (its `$` would let a final newline by)."""
    return USERNAME_PATTERN.fullmatch(name) is not None


# Characters that are acted on rather than shown: controls (ESC starts a terminal escape,
# CR returns over a line), format characters (bidi overrides reorder what is shown,
# zero-width ones hide), line and paragraph separators: the Unicode categories below,
# listed as a regex class for Unicode 14 (Python 3.11's). A test checks the class against
# unicodedata, so a Python with a newer Unicode says to regenerate it. (Lone surrogates
# are not text at all: a JSON decoder refuses them, and `escaped` escapes them too.)
NOT_SHOWN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
NOT_SHOWN_CLASS = (
    "\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
    "\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
# Text of characters that are all shown as themselves (for JSON Schema's `pattern`).
SHOWN_PATTERN = f"^[^{NOT_SHOWN_CLASS}]*$"
_NOT_SHOWN = re.compile(f"[{NOT_SHOWN_CLASS}\ud800-\udfff]")


def is_printable(text: str) -> bool:
    """Whether every character of `text` is shown as itself (none is acted on)."""
    return _NOT_SHOWN.search(text) is None


def escaped(text: str) -> str:
    """`text` with every character that is not shown as its escape (`\\x1b`, `\\u202e`)."""
    return _NOT_SHOWN.sub(lambda found: found[0].encode("unicode_escape").decode(), text)


def shown_only(text: str) -> str:
    """`text` without the characters that are not shown."""
    return _NOT_SHOWN.sub("", text)
