"""The SSF transmitter's endpoints (OpenID SSF 1.0, CAEP 1.0; docs/SSF.md).

Discovery and the JWKS are public. Receivers are registered by the admin API and get
bearer tokens from /ssf/token (OAuth 2.0 client credentials, client_secret_basic); each
token names its receiver, which sees and manages its own stream only: another stream's
id is a 404, as an unknown one is. Bad bodies are 400s (the specification's code), never
5xx.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
import time
from typing import Any
from urllib.parse import unquote

import msgspec
from aiohttp import web

from service.api.admin import authorize
from service.api.appkeys import SSF_POLL, SSF_RECEIVERS, SSF_SIGNER, SSF_WAITING
from service.api.inputs import MAX_BODY, client_ip
from service.api.problems import ApiError
from service.events import urls
from service.runtime.appkeys import SETTINGS
from service.runtime.limits import body_deadline
from service.runtime.responses import json_response
from service.ssf import sets
from service.ssf.poll import MAX_EVENTS, queue_control
from service.ssf.store import (
    POLL,
    PUSH,
    SCOPES,
    STATUSES,
    TOKEN_TTL,
    Receiver,
    ReceiverNotFound,
    Stream,
)

log = logging.getLogger(__name__)
routes = web.RouteTableDef()  # the receivers' own endpoints
admin_routes = web.RouteTableDef()

MAX_NAME = 200
MAX_URL = 2048
MAX_AUTH_HEADER = 4096
LONG_POLL = 30.0  # seconds a poll waits at most for a SET
RECHECK = 0.25  # seconds between looks while a poll waits
TOKEN_FAILURES = 20  # failed token requests per client address per minute
MIN_VERIFICATION_INTERVAL = 15  # seconds between verification requests of one stream
MAX_EXCLUDED = 1000  # subjects removed from one stream
WAITING_POLLS = 2  # long polls one stream may hold open per API process; more answer at once


def _bad(detail: str, code: str = "invalid_request") -> ApiError:
    return ApiError(400, code, "Bad request", detail)


def _not_found() -> ApiError:
    return ApiError(404, "stream_not_found", "Not found", "No such stream.")


# -- discovery -------------------------------------------------------------------------------


@routes.get("/.well-known/ssf-configuration")
async def configuration(request: web.Request) -> web.Response:
    issuer = request.app[SETTINGS].ssf_issuer_url
    return json_response(
        {
            "spec_version": "1_0",
            "issuer": issuer,
            "jwks_uri": f"{issuer}/ssf/jwks.json",
            "delivery_methods_supported": [PUSH, POLL],
            "configuration_endpoint": f"{issuer}/ssf/stream",
            "status_endpoint": f"{issuer}/ssf/status",
            "add_subject_endpoint": f"{issuer}/ssf/subjects:add",
            "remove_subject_endpoint": f"{issuer}/ssf/subjects:remove",
            "verification_endpoint": f"{issuer}/ssf/verify",
            "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}],
            "default_subjects": "ALL",
        }
    )


@routes.get("/ssf/jwks.json")
async def jwks(request: web.Request) -> web.Response:
    response = json_response(request.app[SSF_SIGNER].jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


# -- the admin API: receivers --------------------------------------------------------------


@admin_routes.post("/admin/ssf/receivers")
async def create_receiver(request: web.Request) -> web.Response:
    await authorize(request)
    body = await _json_object(request)
    name, audience = body.get("name"), body.get("audience")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise ApiError(422, "validation_error", "Invalid request", "name: 1-200 characters")
    if not isinstance(audience, str) or not 0 < len(audience) <= MAX_URL:
        raise ApiError(422, "validation_error", "Invalid request", "audience: 1-2048 characters")
    receiver, secret = await request.app[SSF_RECEIVERS].create(name, audience)
    log.info("SSF receiver %s created", receiver.client_id)
    return json_response({**_receiver(receiver), "client_secret": secret}, status=201)


@admin_routes.get("/admin/ssf/receivers")
async def list_receivers(request: web.Request) -> web.Response:
    await authorize(request)
    found = await request.app[SSF_RECEIVERS].all()
    return json_response({"receivers": [_receiver(r) for r in found]})


@admin_routes.get("/admin/ssf/receivers/{client_id}")
async def get_receiver(request: web.Request) -> web.Response:
    await authorize(request)
    return json_response(_receiver(await _admin_receiver(request)))


@admin_routes.delete("/admin/ssf/receivers/{client_id}")
async def delete_receiver(request: web.Request) -> web.Response:
    await authorize(request)
    try:
        await request.app[SSF_RECEIVERS].delete(request.match_info["client_id"])
    except ReceiverNotFound:
        raise _receiver_not_found() from None
    return web.Response(status=204)


async def _admin_receiver(request: web.Request) -> Receiver:
    try:
        return await request.app[SSF_RECEIVERS].get(request.match_info["client_id"])
    except ReceiverNotFound:
        raise _receiver_not_found() from None


def _receiver_not_found() -> ApiError:
    return ApiError(404, "receiver_not_found", "Not found", "No such SSF receiver.")


def _receiver(receiver: Receiver) -> dict[str, Any]:
    stream = receiver.stream
    return {
        "client_id": receiver.client_id,
        "name": receiver.name,
        "audience": receiver.audience,
        "created_at": _rfc3339(receiver.created_ms),
        "stream_id": stream.stream_id if stream else None,
        "status": stream.status if stream else None,
    }


def _rfc3339(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


# -- tokens: OAuth 2.0 client credentials (RFC 6749 §4.4) ----------------------------------


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    response = json_response({"error": error, "error_description": description}, status=status)
    response.headers["Cache-Control"] = "no-store"
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="ssf"'
    return response


@routes.post("/ssf/token")
async def token(request: web.Request) -> web.Response:
    store = request.app[SSF_RECEIVERS]
    # The right credentials always pass: a secret is 32 random bytes, so there is no guess
    # to slow down, and counting first would let anyone behind the same address lock every
    # receiver out. Failures only make further failures a 429.
    credentials = _basic(request.headers.get("Authorization", ""))
    receiver = None if credentials is None else await store.check_secret(*credentials)
    if receiver is None:
        ip = client_ip(request, request.app[SETTINGS].trusted_proxies)
        if await store.failures(ip) >= TOKEN_FAILURES:
            response = _oauth_error(429, "slow_down", "Too many failed requests; wait a minute.")
            response.headers["Retry-After"] = "60"
            return response
        await store.count_failure(ip)
        if credentials is None:
            return _oauth_error(401, "invalid_client", "Authenticate with HTTP Basic.")
        return _oauth_error(401, "invalid_client", "Unknown client or wrong secret.")
    form = await _form(request)
    if form is None:
        return _oauth_error(400, "invalid_request", "Send application/x-www-form-urlencoded.")
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "Only client_credentials.")
    asked = form.get("scope", " ".join(SCOPES)).split()
    if not asked or any(s not in SCOPES for s in asked):
        return _oauth_error(400, "invalid_scope", "Scopes: ssf.manage ssf.read.")
    scope = " ".join(dict.fromkeys(asked))
    issued = await store.issue_token(receiver.client_id, scope)
    response = json_response(
        {"access_token": issued, "token_type": "Bearer", "expires_in": TOKEN_TTL, "scope": scope}
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _basic(header: str) -> tuple[str, str] | None:
    """client_secret_basic (RFC 6749 §2.3.1): both parts are form-urlencoded first."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value or len(value) > 1024:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return None
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


async def _form(request: web.Request) -> dict[str, str] | None:
    if request.content_type != "application/x-www-form-urlencoded":
        return None
    _check_size(request)
    try:
        async with body_deadline(request.app[SETTINGS].request_timeout):
            form = await request.post()
    except (ValueError, LookupError):  # LookupError: a charset Python doesn't know
        return None
    return {k: v for k, v in form.items() if isinstance(v, str)}


# -- the receiver's bearer token -----------------------------------------------------------


async def _caller(request: web.Request, scope: str) -> Receiver:
    """The receiver whose bearer token this is, if the token has `scope` (ssf.manage
    covers ssf.read)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    grant = None
    if scheme.lower() == "bearer" and value.isascii():
        grant = await request.app[SSF_RECEIVERS].grant_of(value.strip())
    if grant is None:
        raise ApiError(
            401,
            "invalid_token",
            "Unauthorized",
            "A bearer token from /ssf/token is required.",
            headers={"WWW-Authenticate": 'Bearer realm="ssf", error="invalid_token"'},
        )
    granted = grant.scope.split()
    if scope not in granted and "ssf.manage" not in granted:
        raise ApiError(
            403,
            "insufficient_scope",
            "Forbidden",
            f"The token lacks the scope {scope}.",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        )
    try:
        return await request.app[SSF_RECEIVERS].get(grant.client_id)
    except ReceiverNotFound:  # deleted since: its tokens end with it
        raise ApiError(401, "invalid_token", "Unauthorized", "The receiver is gone.") from None


def _own_stream(receiver: Receiver, stream_id: object) -> Stream:
    stream = receiver.stream
    if stream is None or not isinstance(stream_id, str) or stream.stream_id != stream_id:
        raise _not_found()
    return stream


# -- stream configuration (SSF 1.0 §8.1.1) --------------------------------------------------


def _config(request: web.Request, receiver: Receiver, stream: Stream) -> dict[str, Any]:
    issuer = request.app[SETTINGS].ssf_issuer_url
    delivery: dict[str, Any] = {
        "method": stream.delivery_method,
        "endpoint_url": stream.endpoint_url,
    }
    return {
        "stream_id": stream.stream_id,
        "iss": issuer,
        "aud": receiver.audience,
        "events_supported": list(sets.EVENT_TYPES),
        "events_requested": stream.events_requested,
        "events_delivered": stream.events_delivered,
        "delivery": delivery,
        "min_verification_interval": MIN_VERIFICATION_INTERVAL,
        "description": stream.description,
    }


async def _delivery(request: web.Request, given: object, stream_id: str) -> tuple[str, str, str]:
    """(method, endpoint_url, authorization_header) of a `delivery` member."""
    issuer = request.app[SETTINGS].ssf_issuer_url
    if given is None:
        return POLL, f"{issuer}/ssf/poll/{stream_id}", ""
    if not isinstance(given, dict):
        raise _bad("delivery: an object")
    method = given.get("method")
    if method == POLL:
        if given.get("endpoint_url") not in (None, f"{issuer}/ssf/poll/{stream_id}"):
            raise _bad("delivery.endpoint_url: the transmitter supplies a poll URL")
        return POLL, f"{issuer}/ssf/poll/{stream_id}", ""
    if method != PUSH:
        raise _bad(f"delivery.method: {PUSH} or {POLL}")
    url, auth = given.get("endpoint_url"), given.get("authorization_header", "")
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL:
        raise _bad("delivery.endpoint_url: the receiver's URL is required for push")
    if not isinstance(auth, str) or len(auth) > MAX_AUTH_HEADER or not auth.isprintable():
        raise _bad("delivery.authorization_header: a string of up to 4096 printable characters")
    try:
        await urls.check_configured(url, request.app[SETTINGS])
    except urls.UrlRefused as exc:
        raise _bad(f"delivery.endpoint_url: {exc}") from None
    return PUSH, url, auth


def _events(given: object) -> tuple[list[str], list[str]]:
    if given is None:
        requested: list[str] = list(sets.EVENT_TYPES)
    elif isinstance(given, list) and all(isinstance(e, str) and len(e) <= MAX_URL for e in given):
        requested = list(dict.fromkeys(given))[:50]
    else:
        raise _bad("events_requested: a list of event type URIs")
    return requested, [e for e in requested if e in sets.EVENT_TYPES]


def _description(given: object) -> str:
    if given is None:
        return ""
    if not isinstance(given, str) or len(given) > 1000:
        raise _bad("description: a string of up to 1000 characters")
    return given


@routes.post("/ssf/stream")
async def create_stream(request: web.Request) -> web.Response:
    receiver = await _caller(request, "ssf.manage")
    body = await _json_object(request)
    if receiver.stream is not None:
        raise ApiError(409, "stream_exists", "Conflict", "This receiver has a stream already.")
    stream_id = "ss_" + secrets.token_hex(8)
    method, url, auth = await _delivery(request, body.get("delivery"), stream_id)
    requested, delivered = _events(body.get("events_requested"))
    stream = Stream(
        stream_id=stream_id,
        delivery_method=method,
        endpoint_url=url,
        authorization_header=auth,
        events_requested=requested,
        events_delivered=delivered,
        description=_description(body.get("description")),
        created_ms=_now(request),
    )
    if not await request.app[SSF_RECEIVERS].create_stream(receiver.client_id, stream):
        raise ApiError(409, "stream_exists", "Conflict", "This receiver has a stream already.")
    log.info("SSF stream %s (%s) created for %s", stream_id, method, receiver.client_id)
    return json_response(_config(request, receiver, stream), status=201)


@routes.get("/ssf/stream")
async def read_stream(request: web.Request) -> web.Response:
    receiver = await _caller(request, "ssf.read")
    stream_id = request.query.get("stream_id")
    if stream_id is None:
        found = [receiver.stream] if receiver.stream else []
        return json_response([_config(request, receiver, s) for s in found])
    return json_response(_config(request, receiver, _own_stream(receiver, stream_id)))


@routes.patch("/ssf/stream")
async def update_stream(request: web.Request) -> web.Response:
    return await _change_stream(request, replace=False)


@routes.put("/ssf/stream")
async def replace_stream(request: web.Request) -> web.Response:
    return await _change_stream(request, replace=True)


async def _change_stream(request: web.Request, *, replace: bool) -> web.Response:
    receiver = await _caller(request, "ssf.manage")
    body = await _json_object(request)
    stream = _own_stream(receiver, body.get("stream_id"))
    if replace or "delivery" in body:
        given = body.get("delivery")
        if given is None and not replace:
            raise _bad("delivery: an object")
        method, url, auth = await _delivery(request, given, stream.stream_id)
        stream.delivery_method, stream.endpoint_url, stream.authorization_header = method, url, auth
    if replace or "events_requested" in body:
        stream.events_requested, stream.events_delivered = _events(body.get("events_requested"))
    if replace or "description" in body:
        stream.description = _description(body.get("description"))
    await _save(request, receiver, stream)
    return json_response(_config(request, receiver, stream))


@routes.delete("/ssf/stream")
async def delete_stream(request: web.Request) -> web.Response:
    receiver = await _caller(request, "ssf.manage")
    stream = _own_stream(receiver, request.query.get("stream_id"))
    await request.app[SSF_RECEIVERS].delete_stream(receiver.client_id, stream.stream_id)
    log.info("SSF stream %s deleted", stream.stream_id)
    return web.Response(status=204)


async def _save(request: web.Request, receiver: Receiver, stream: Stream) -> None:
    try:
        await request.app[SSF_RECEIVERS].save_stream(receiver.client_id, stream)
    except ReceiverNotFound:
        raise _not_found() from None


# -- status (§8.1.2) -----------------------------------------------------------------------


@routes.get("/ssf/status")
async def read_status(request: web.Request) -> web.Response:
    receiver = await _caller(request, "ssf.read")
    stream = _own_stream(receiver, request.query.get("stream_id"))
    return json_response(_status(stream))


@routes.post("/ssf/status")
async def update_status(request: web.Request) -> web.Response:
    receiver = await _caller(request, "ssf.manage")
    body = await _json_object(request)
    stream = _own_stream(receiver, body.get("stream_id"))
    status, reason = body.get("status"), body.get("reason", "")
    if status not in STATUSES:
        raise _bad("status: enabled, paused or disabled")
    if not isinstance(reason, str) or len(reason) > 1000:
        raise _bad("reason: a string of up to 1000 characters")
    if status != stream.status:
        event = {"status": status, **({"reason": reason} if reason else {})}
        # Before a pause or disable takes effect, so the receiver learns of it.
        await _send_stream_set(request, receiver, stream, sets.STREAM_UPDATED, event)
        if stream.status == "disabled":  # what happened while disabled is never sent
            stream.drop_before_ms = _now(request)
        stream.status = status
    stream.reason = reason
    await _save(request, receiver, stream)
    log.info("SSF stream %s: %s", stream.stream_id, status)
    return json_response(_status(stream))


def _status(stream: Stream) -> dict[str, Any]:
    found: dict[str, Any] = {"stream_id": stream.stream_id, "status": stream.status}
    if stream.reason:
        found["reason"] = stream.reason
    return found


# -- subjects (§8.1.3) ---------------------------------------------------------------------


def _subject_user(request: web.Request, subject: object) -> str:
    """The username of a subject: iss_sub, or complex with an iss_sub user, of our issuer."""
    if isinstance(subject, dict) and subject.get("format") == "complex":
        subject = subject.get("user")
    if not isinstance(subject, dict) or subject.get("format") != "iss_sub":
        raise _bad(
            "subject: an iss_sub subject, or complex with an iss_sub user", "invalid_subject"
        )
    iss, sub = subject.get("iss"), subject.get("sub")
    if (
        iss != request.app[SETTINGS].ssf_issuer_url
        or not isinstance(sub, str)
        or not 0 < len(sub) <= 256
    ):
        raise _bad(
            "subject: iss must be this transmitter's issuer, sub a username", "invalid_subject"
        )
    return sub


@routes.post("/ssf/subjects:add")
async def add_subject(request: web.Request) -> web.Response:
    receiver = await _caller(request, "ssf.manage")
    body = await _json_object(request)
    stream = _own_stream(receiver, body.get("stream_id"))
    user = _subject_user(request, body.get("subject"))
    stream.excluded.discard(user)
    await _save(request, receiver, stream)
    return web.Response(status=200)


@routes.post("/ssf/subjects:remove")
async def remove_subject(request: web.Request) -> web.Response:
    receiver = await _caller(request, "ssf.manage")
    body = await _json_object(request)
    stream = _own_stream(receiver, body.get("stream_id"))
    user = _subject_user(request, body.get("subject"))
    if user not in stream.excluded:
        if len(stream.excluded) >= MAX_EXCLUDED:  # every delivery reads the stream's list
            raise _bad(f"at most {MAX_EXCLUDED} subjects may be removed from a stream")
        stream.excluded.add(user)
    await _save(request, receiver, stream)
    return web.Response(status=204)


# -- verification (§8.1.4) -----------------------------------------------------------------


@routes.post("/ssf/verify")
async def verify(request: web.Request) -> web.Response:
    receiver = await _caller(request, "ssf.manage")
    body = await _json_object(request)
    stream = _own_stream(receiver, body.get("stream_id"))
    state = body.get("state")
    if state is not None and (not isinstance(state, str) or len(state) > 1000):
        raise _bad("state: a string of up to 1000 characters")
    if stream.status == "disabled":
        raise ApiError(409, "stream_disabled", "Conflict", "The stream is disabled.")
    wait = await request.app[SSF_RECEIVERS].may_verify(stream.stream_id, MIN_VERIFICATION_INTERVAL)
    if wait:  # each verification is a signature and a SET kept for the receiver
        raise ApiError(
            429,
            "rate_limited",
            "Too Many Requests",
            f"One verification per {MIN_VERIFICATION_INTERVAL} s (min_verification_interval).",
            headers={"Retry-After": str(wait)},
        )
    event = {"state": state} if state is not None else {}
    await _send_stream_set(request, receiver, stream, sets.VERIFICATION, event)
    return web.Response(status=204)


async def _send_stream_set(
    request: web.Request, receiver: Receiver, stream: Stream, event_type: str, event: dict[str, Any]
) -> None:
    now = _now(request)
    claims = sets.stream_set(
        request.app[SETTINGS].ssf_issuer_url,
        receiver.audience,
        stream.stream_id,
        event_type,
        event,
        now,
    )
    signed = request.app[SSF_SIGNER].sign(claims)
    if stream.delivery_method == POLL:
        await request.app[SSF_POLL].append(stream.stream_id, claims["jti"], signed, now)
    else:
        await queue_control(request.app[SSF_RECEIVERS].redis, stream.stream_id, signed)


# -- poll delivery (RFC 8936) --------------------------------------------------------------


@routes.post("/ssf/poll/{stream_id}")
async def poll(request: web.Request) -> web.Response:
    receiver = await _caller(request, "ssf.read")
    stream = _own_stream(receiver, request.match_info["stream_id"])
    if stream.delivery_method != POLL:
        raise _not_found()
    body = await _json_object(request)
    count = body.get("maxEvents", MAX_EVENTS)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise _bad("maxEvents: a non-negative integer")
    immediately = body.get("returnImmediately", False)
    if not isinstance(immediately, bool):
        raise _bad("returnImmediately: true or false")
    done = _acknowledged(body, stream.stream_id)
    store = request.app[SSF_POLL]
    await store.forget(stream.stream_id, done)
    count = min(count, MAX_EVENTS)
    found, more = await store.take(stream.stream_id, count, _now(request))
    deadline = asyncio.get_running_loop().time() + min(
        LONG_POLL, request.app[SETTINGS].request_timeout - 1
    )
    waiting = request.app[SSF_WAITING]
    if waiting[stream.stream_id] >= WAITING_POLLS:  # a receiver can't tie up the process
        immediately = True
    waiting[stream.stream_id] += 1
    try:
        while (
            not found and count and not immediately and asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(RECHECK)  # a short re-check: any worker may append, any node
            found, more = await store.take(stream.stream_id, count, _now(request))
    finally:
        waiting[stream.stream_id] -= 1
        if not waiting[stream.stream_id]:
            del waiting[stream.stream_id]
    return json_response({"sets": found, "moreAvailable": more})


def _acknowledged(body: dict[str, Any], stream_id: str) -> list[str]:
    ack, errors = body.get("ack", []), body.get("setErrs", {})
    if not isinstance(ack, list) or not all(isinstance(j, str) and len(j) <= 256 for j in ack):
        raise _bad("ack: a list of jti")
    if not isinstance(errors, dict) or not all(isinstance(e, dict) for e in errors.values()):
        raise _bad("setErrs: an object of jti to {err, description}")
    for jti, error in errors.items():
        log.warning(
            "SSF stream %s: the receiver refused SET %s: %s %s",
            stream_id,
            jti[:64],
            str(error.get("err"))[:64],
            str(error.get("description"))[:200],
        )
    return [*ack, *[j for j in errors if len(j) <= 256]][: MAX_EVENTS * 2]


# -- bodies --------------------------------------------------------------------------------


def _check_size(request: web.Request) -> None:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "payload_too_large", "Payload too large", "The body is over 64 KiB.")


async def _json_object(request: web.Request) -> dict[str, Any]:
    """A JSON object body, or a 400 (the specification's answer to a malformed request)."""
    _check_size(request)
    if not request.can_read_body:
        return {}
    if request.content_type != "application/json":
        raise ApiError(
            415, "unsupported_media_type", "Unsupported media type", "Send application/json."
        )
    try:
        async with body_deadline(request.app[SETTINGS].request_timeout):
            raw = await request.read()
        body = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise _bad("not valid JSON", "malformed_body") from None
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object", "malformed_body")
    return body


def _now(request: web.Request) -> int:
    return request.app[SSF_RECEIVERS].clock.now_ms()
