"""Reading what a request says: bodies, the client's address, its device."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import TypeVar

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from ua_parser import parse as parse_user_agent

from service.api.problems import ApiError, validation_error
from service.runtime.limits import body_deadline
from service.settings import IpNetwork
from service.wire.names import is_printable, shown_only

T = TypeVar("T")
MAX_BODY = 64 * 1024
MAX_USER_AGENT = 512
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_PATH_IN_ERROR = re.compile(r" - at `\$\.?([^`]*)`$")


async def decode_body(
    request: web.Request, schema: type[T], seconds: float, *, forms: bool = False
) -> T:
    """Decode a JSON body (or, with `forms`, a form) into `schema`, or raise a 4xx ApiError.

    A body that takes longer than `seconds` to arrive raises RequestTimedOut. Forms are for
    /login (the original tutorial's clients post one); a form can't say null, so an API
    for programs takes JSON only.
    """
    async with body_deadline(seconds):
        return await _decode_body(request, schema, forms)


async def _decode_body(request: web.Request, schema: type[T], forms: bool) -> T:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "payload_too_large", "Payload too large", "The body is over 64 KiB.")
    if forms and request.content_type in FORM_TYPES:
        try:
            form = await request.post()
        except (ValueError, HttpProcessingError):  # bad encoding, boundary or part headers
            raise ApiError(
                400, "malformed_body", "Malformed body", "The form body could not be parsed."
            ) from None
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        # A form has only strings: "true" must be able to mean a bool.
        return _convert(lambda: msgspec.convert(fields, schema, strict=False))
    if request.content_type != "application/json":
        accepted = "application/json" + (" or a form" if forms else "")
        raise ApiError(415, "unsupported_media_type", "Unsupported media type", f"Send {accepted}.")
    body = await request.read()
    return _convert(lambda: msgspec.json.decode(body, type=schema))


def _convert(decode: object) -> T:  # type: ignore[type-var]
    try:
        return decode()  # type: ignore[operator]
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH_IN_ERROR.search(message)
        field = match.group(1) if match else _missing_field(message)
        raise validation_error(field or "body", _PATH_IN_ERROR.sub("", message)) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting
        raise ApiError(400, "malformed_body", "Malformed body", f"Not valid JSON: {exc}") from None


def _missing_field(message: str) -> str:
    match = re.search(r"missing required field `([^`]+)`", message)
    return match.group(1) if match else ""


def header_text(value: str) -> str:
    """A header value as valid text, whatever bytes the client sent.

    aiohttp decodes headers as UTF-8 and keeps undecodable bytes as surrogate escapes, which
    no encoder (redis-py's, a log stream's) accepts. Such a value is read as Latin-1, the
    charset HTTP/1.1 historically allowed in header values.
    """
    try:
        value.encode()
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("latin-1")
    return value


def client_ip(request: web.Request, trusted: tuple[IpNetwork, ...]) -> str:
    """The peer address, or the first untrusted hop of X-Forwarded-For from a trusted proxy."""
    peer = request.remote or ""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop if _is_ip(hop) else peer
    return hops[0] if hops and _is_ip(hops[0]) else peer


def ip_address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IPv4 or IPv6 address `value` is, or None.

    An IPv6 zone id (`fe80::1%eth0`) names an interface of the host that wrote it, and
    Python takes any text at all for one (`::1%\r\nX-Evil: 1`): no address anybody else
    sees has one, so a value with one is no address.
    """
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    return None if getattr(address, "scope_id", None) is not None else address


def _is_ip(value: str) -> bool:
    return ip_address(value) is not None


def _is_trusted(address: str, trusted: tuple[IpNetwork, ...]) -> bool:
    ip = ip_address(address)
    return ip is not None and any(ip in network for network in trusted)


def given_device_name(name: str | None) -> str | None:
    """The device name a client gave, or 422 if it holds a character that would be acted
    on rather than shown (a terminal escape, a bidi override): other devices show it."""
    if name is not None and not is_printable(name):
        raise validation_error(
            "device_name", "control and format characters (such as ESC, CR, bidi overrides)"
        )
    return name


@lru_cache(maxsize=1024)
def device_name_from(user_agent: str) -> str:
    """A readable device name such as 'Firefox on Ubuntu' or 'Mobile Safari on iPhone',
    with nothing in it that would be acted on rather than shown (the User-Agent is the
    client's to write, but the name is ours)."""
    return shown_only(_name_from(user_agent)) or "Unknown device"


def _name_from(user_agent: str) -> str:
    if not user_agent:
        return "Unknown device"
    parsed = parse_user_agent(user_agent[:MAX_USER_AGENT])
    browser = parsed.user_agent.family if parsed.user_agent else ""
    os_name = parsed.os.family if parsed.os else ""
    device = parsed.device.family if parsed.device else ""
    place = device if device and device not in ("Other", "Mac", "Generic Smartphone") else os_name
    if browser and browser != "Other" and place and place != "Other":
        return f"{browser} on {place}"
    if browser and browser != "Other":
        return browser
    if place and place != "Other":
        return place
    product = user_agent.split("/", 1)[0].split(" ", 1)[0].strip()[:40]
    return product if product.isprintable() and product else "Unknown device"
