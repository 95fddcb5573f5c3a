"""Every Redis key and channel name, in one place: nothing else builds one.

All of one user's keys carry the hash tag `{u:<username>}` so that each change to a
user's sessions is one Lua script on one Redis Cluster slot. Usernames are restricted
(see `service.wire.names`) so a name can never break out of its tag. The scripts get
these names from here (as KEYS, or as a prefix to which they append a session id).
"""

from __future__ import annotations

import functools
import itertools
import string
import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

PREFIX = "sw"

SWEEPER_LEASE = f"{PREFIX}:lease:sweeper"
# The due-time index ("<user> <sid>" -> deadline ms) is split into buckets, each its own
# hash tag, so sign-ins spread their writes over the cluster instead of all landing on
# the one node of a single key. 16: on 3 masters each holds ~5, on 16+ they spread out;
# the sweeper reads all of them in one pipelined round trip per pass, which costs nothing.
DUE_BUCKETS = 16

_CHANNEL = "ch"

# Events out: one outbox per hash slot (see docs/EVENTS.md). The outbox, its delivery
# state and its wake channel carry a hash tag that hashes to that very slot, so the script
# that changes a user's sessions writes the outbox of the user's own slot.
SLOTS = REDIS_CLUSTER_HASH_SLOTS
# Slots are delivered in this many shards, each under a lease of its own: worker processes
# share the duty shard by shard. Contiguous ranges, as a cluster's masters own them.
OUTBOX_SHARDS = 16
_SLOT_TAG = "o:"


def user_prefix(username: str) -> str:
    """Prefix of every key of one user: `sw:{u:<name>}:`."""
    return f"{PREFIX}:{{u:{username}}}:"


def session_index(username: str) -> str:
    """ZSET session id -> last seen (ms); the key scripts are routed by."""
    return user_prefix(username) + "idx"


def presence(username: str) -> str:
    """ZSET '<session id> <socket id>' -> until (ms): the user's live sockets, on any
    worker process, each kept alive by its worker's reports (service/sessions/presence.py)."""
    return user_prefix(username) + "on"


def device_index(username: str) -> str:
    """HASH device id -> the session id signed in on that device."""
    return user_prefix(username) + "dev"


def session_record(username: str, session_id: str) -> str:
    """HASH of one session's fields; `session_record(user, "")` is the scripts' prefix."""
    return user_prefix(username) + "s:" + session_id


def tombstone(username: str, session_id: str) -> str:
    """Why a session ended; `tombstone(user, "")` is the scripts' prefix."""
    return user_prefix(username) + "t:" + session_id


def tombstone_index(username: str) -> str:
    """ZSET session id -> revoked at (ms): the user's tombstones, oldest first, capped."""
    return user_prefix(username) + "tombs"


def revoked_credentials(username: str) -> str:
    """ZSET digest of a replaced or removed password hash -> revoked at (ms): a sign-in
    checked against one of them opens no session (see create.lua)."""
    return user_prefix(username) + "creds"


def event_log(username: str) -> str:
    """Capped STREAM of the user's session events."""
    return user_prefix(username) + "log"


def channel(username: str) -> str:
    """Pub/sub channel carrying the user's session events."""
    return user_prefix(username) + _CHANNEL


_CHANNEL_HEAD, _CHANNEL_TAIL = channel("\0").split("\0")


def username_from_channel(name: str) -> str | None:
    """The user whose `channel()` this is, or None for any other name."""
    if not (name.startswith(_CHANNEL_HEAD) and name.endswith(_CHANNEL_TAIL)):
        return None
    return name[len(_CHANNEL_HEAD) : len(name) - len(_CHANNEL_TAIL)] or None


def login_failures_by_user(username: str) -> str:
    """Failed sign-ins for one (valid) username, on the user's slot: the script that counts
    a failure also records it for the owner to see (`signin_failures`)."""
    return user_prefix(username) + "rl"


def signin_failures(username: str) -> str:
    """Capped LIST of the user's failed sign-ins, one JSON entry per window, newest first."""
    return user_prefix(username) + "fails"


def login_failures_by_ip(client: str) -> str:
    """Failed sign-ins from one client (an address, or an IPv6 /64: users/clients.py)."""
    return f"{PREFIX}:rl:ip:{client}"


def device_failures_by_ip(client: str) -> str:
    """Failed sign-ins of known devices from one client: their budget is apart from the
    client's other sign-ins (so guessers can't lock them out), yet bounded per client."""
    return f"{PREFIX}:rl:ipd:{client}"


def admin_failures_by_ip(client: str) -> str:
    """Wrong admin tokens from one client (a budget apart from sign-ins)."""
    return f"{PREFIX}:rl:admin:{client}"


def due_bucket(username: str) -> int:
    return zlib.crc32(username.encode()) % DUE_BUCKETS


def due_index(bucket: int) -> str:
    return f"{PREFIX}:{{due:{bucket}}}"


def due_index_of(username: str) -> str:
    """The due-index bucket that holds the user's sessions."""
    return due_index(due_bucket(username))


def login_failures_by_device(username: str, device_id: str) -> str:
    """Failed sign-ins of one known device (see users/devicetokens.py), on the user's slot."""
    return user_prefix(username) + "rl:d:" + device_id


def socket_ticket(digest: str) -> str:
    """A socket ticket (service/sessions/tickets.py), by the digest of the ticket: each is
    its own slot, so tickets spread over a cluster."""
    return f"{PREFIX}:tk:{digest}"


def due_member(username: str, session_id: str) -> str:
    return f"{username} {session_id}"


def parse_due_member(member: str) -> tuple[str, str]:
    username, _, session_id = member.partition(" ")
    return username, session_id


# --- events out: the outbox of each slot, its delivery state, leases, endpoints ----------


@functools.cache
def _slot_tags() -> tuple[str, ...]:
    """For every hash slot, the shortest hash tag (`o:` + 1-4 characters) that hashes to
    it: built once, in about 15 ms."""
    tags: list[str | None] = [None] * SLOTS
    missing = SLOTS
    for length in itertools.count(1):
        for chars in itertools.product(string.digits + string.ascii_lowercase, repeat=length):
            tag = _SLOT_TAG + "".join(chars)
            slot = key_slot(tag.encode())
            if tags[slot] is None:
                tags[slot] = tag
                missing -= 1
                if not missing:
                    return tuple(t for t in tags if t is not None)
    raise AssertionError("unreachable")


def slot_of_user(username: str) -> int:
    """The hash slot of every key of the user."""
    return key_slot(session_index(username).encode())


def script_keys(username: str) -> list[str]:
    """KEYS[1..8] of every session script, in the order lib.lua names them."""
    slot = slot_of_user(username)
    return [
        session_index(username),
        device_index(username),
        event_log(username),
        channel(username),
        tombstone_index(username),
        revoked_credentials(username),
        outbox(slot),
        outbox_wake(slot),
    ]


def _slot_prefix(slot: int) -> str:
    return f"{PREFIX}:{{{_slot_tags()[slot]}}}:"


def outbox(slot: int) -> str:
    """STREAM of the slot's session events, kept EVENTS_RETENTION, for events out."""
    return _slot_prefix(slot) + "ob"


def outbox_state(slot: int) -> str:
    """HASH of the slot's delivery state: each receiver's cursor and pending deliveries."""
    return _slot_prefix(slot) + "obs"


def outbox_wake(slot: int) -> str:
    """Sharded channel that tells the delivery duty the slot's outbox has news."""
    return _slot_prefix(slot) + "wake"


def slot_of_wake(channel_name: str) -> int:
    return key_slot(channel_name.encode())


def shard_of_slot(slot: int) -> int:
    return slot * OUTBOX_SHARDS // SLOTS


def slots_of_shard(shard: int) -> range:
    return range(shard * SLOTS // OUTBOX_SHARDS, (shard + 1) * SLOTS // OUTBOX_SHARDS)


def outbox_lease(shard: int) -> str:
    """The lease of one shard of slots (each on a slot of its own: spread over masters)."""
    return f"{PREFIX}:lease:ob:{shard}"


def delivery_workers() -> str:
    """ZSET worker token -> alive until (ms): how many processes share the delivery duty."""
    return f"{PREFIX}:ob:workers"


_WEBHOOKS = f"{PREFIX}:{{wh}}:"


def webhook_index() -> str:
    """SET of the webhook endpoints' ids (all endpoints share one small slot)."""
    return _WEBHOOKS + "all"


def webhook(endpoint_id: str) -> str:
    """HASH of one webhook endpoint's fields."""
    return _WEBHOOKS + "ep:" + endpoint_id


def webhook_deliveries(endpoint_id: str, shard: int) -> str:
    """Capped STREAM of the endpoint's delivery attempts in one shard (the shard's lease
    holder is its only writer; a listing merges the shards)."""
    return f"{PREFIX}:{{whd:{endpoint_id}:{shard}}}:log"


# --- shared signals (service/ssf, docs/SSF.md) --------------------------------------------

_SSF = f"{PREFIX}:{{ssf}}:"


def ssf_receivers() -> str:
    """SET of the SSF receivers' client ids (receivers are few: one small slot, as webhooks)."""
    return _SSF + "all"


def ssf_receiver(client_id: str) -> str:
    """HASH of one receiver: its name, audience, secret's digest and its stream (JSON)."""
    return _SSF + "rc:" + client_id


def ssf_token(digest: str) -> str:
    """A receiver's bearer token, by its digest, with the token's lifetime as TTL."""
    return f"{PREFIX}:ssf:tok:{digest}"


def ssf_token_failures(client: str) -> str:
    """Failed token requests from one client address (a budget against guessing)."""
    return f"{PREFIX}:rl:ssf:{client}"


def _ssf_stream(stream_id: str) -> str:
    return f"{PREFIX}:{{ssf:{stream_id}}}:"


def ssf_poll_order(stream_id: str) -> str:
    """ZSET jti -> when queued (ms): a poll stream's SETs waiting for an acknowledgement."""
    return _ssf_stream(stream_id) + "poll"


def ssf_poll_sets(stream_id: str) -> str:
    """HASH jti -> the signed SET, beside ssf_poll_order (same slot)."""
    return _ssf_stream(stream_id) + "sets"


def ssf_verified(stream_id: str) -> str:
    """STRING whose TTL is the stream's min_verification_interval: a verification was asked."""
    return _ssf_stream(stream_id) + "verified"


def ssf_control(stream_id: str) -> str:
    """LIST of signed verification and stream-updated SETs a push stream has to send."""
    return _ssf_stream(stream_id) + "ctl"
