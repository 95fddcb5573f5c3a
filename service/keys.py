"""Every Redis key and channel name, in one place.

All of one user's keys carry the hash tag `{u:<username>}` so that each change to a
user's sessions is one Lua script on one Redis Cluster slot. Usernames are restricted
(see `users.USERNAME_PATTERN`) so a name can never break out of its tag.
"""

from __future__ import annotations

PREFIX = "sw"

# Global keys (not per user).
DUE_INDEX = f"{PREFIX}:due"  # ZSET "<user> <sid>" -> deadline ms, swept by the worker
SWEEPER_LEASE = f"{PREFIX}:lease:sweeper"


def user_prefix(username: str) -> str:
    """Prefix of every key of one user: `sw:{u:<name>}:`."""
    return f"{PREFIX}:{{u:{username}}}:"


def session_index(username: str) -> str:
    """ZSET session id -> last seen (ms); the key scripts are routed by."""
    return user_prefix(username) + "idx"


def session_record(username: str, session_id: str) -> str:
    return user_prefix(username) + "s:" + session_id


def tombstone(username: str, session_id: str) -> str:
    return user_prefix(username) + "t:" + session_id


def event_log(username: str) -> str:
    """Capped STREAM of the user's session events."""
    return user_prefix(username) + "log"


def channel(username: str) -> str:
    """Pub/sub channel carrying the user's session events."""
    return user_prefix(username) + "ch"


def username_from_channel(name: str) -> str:
    return name[len(PREFIX) + 4 : -len("}:ch")]


def login_failures_by_user(username: str) -> str:
    return f"{PREFIX}:rl:u:{username}"


def login_failures_by_ip(ip: str) -> str:
    return f"{PREFIX}:rl:ip:{ip}"


def due_member(username: str, session_id: str) -> str:
    return f"{username} {session_id}"


def parse_due_member(member: str) -> tuple[str, str]:
    username, _, session_id = member.partition(" ")
    return username, session_id
