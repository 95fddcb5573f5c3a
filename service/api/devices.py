"""What a User-Agent says about the device: browser, system and kind, parsed once at sign-in
and stored with the session (never per request)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ua_parser import parse as parse_user_agent

from service.wire.names import shown_only

MAX_USER_AGENT = 512
# Programs people run in a terminal: ours (clients/terminal sends `sessionwire/<version>`),
# then HTTP tools and libraries. ua-parser knows few of them.
_OURS = re.compile(r"^sessionwire/(\d+)(?:\.(\d+))?", re.IGNORECASE)
_TERMINAL = re.compile(
    r"^(curl|wget|httpie|xh|python-requests|python-httpx|python-urllib|aiohttp|python/\S+ aiohttp"
    r"|go-http-client|okhttp|powershell|libwww-perl|insomnia|postmanruntime)\b",
    re.IGNORECASE,
)
_BROWSER_NAMES = {
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Edge",
}
_OS_NAMES = {"Mac OS X": "macOS"}
_DESKTOP_OS = {
    "Windows",
    "macOS",
    "Linux",
    "Ubuntu",
    "Debian",
    "Fedora",
    "Red Hat",
    "Arch Linux",
    "Linux Mint",
    "openSUSE",
    "FreeBSD",
    "OpenBSD",
    "Chrome OS",
    "ChromeOS",
}
_PHONE_DEVICES = {"iPhone", "iPod", "Generic Smartphone", "Generic Feature Phone"}


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    browser: str  # "" when unknown
    os: str
    device_type: str  # desktop, phone, tablet, terminal, unknown


@lru_cache(maxsize=1024)
def describe(user_agent: str) -> DeviceInfo:
    """Browser ("Chrome 120"), system ("Android 14") and kind of device of a User-Agent;
    nothing in them would be acted on rather than shown (the client writes the header)."""
    user_agent = user_agent[:MAX_USER_AGENT].strip()
    if not user_agent:
        return DeviceInfo("", "", "unknown")
    ours = _OURS.match(user_agent)
    if ours:
        version = ".".join(part for part in ours.groups() if part is not None)
        return DeviceInfo(f"sessionwire {version}", _os_of(user_agent), "terminal")
    parsed = parse_user_agent(user_agent)
    family = parsed.user_agent.family if parsed.user_agent else "Other"
    browser = "" if family == "Other" else _versioned(_BROWSER_NAMES.get(family, family), parsed)
    system = _os_of(user_agent)
    if _TERMINAL.match(user_agent):
        return DeviceInfo(shown_only(browser), system, "terminal")
    return DeviceInfo(shown_only(browser), system, _kind(user_agent, system, parsed))


def _versioned(name: str, parsed: object) -> str:
    major = getattr(getattr(parsed, "user_agent", None), "major", None)
    return f"{name} {major}" if major else name


def _os_of(user_agent: str) -> str:
    found = parse_user_agent(user_agent[:MAX_USER_AGENT]).os
    if found is None or found.family == "Other":
        return ""
    name = _OS_NAMES.get(found.family, found.family)
    version = found.major or ""
    if version and found.minor and found.minor != "0" and (name == "iOS" or version == "10"):
        version += "." + found.minor
    return shown_only(f"{name} {version}" if version else name)


def _kind(user_agent: str, system: str, parsed: object) -> str:
    device = getattr(parsed, "device", None)
    family = device.family if device else ""
    brand = (device.brand or "") if device else ""
    if family == "Spider" or brand == "Spider":
        return "unknown"
    if family == "iPad" or "Tablet" in brand or "Tablet" in user_agent:
        return "tablet"
    if family in _PHONE_DEVICES or "Windows Phone" in system:
        return "phone"
    if system.startswith("Android"):
        # Android phones say "Mobile"; tablets leave it out (Google's own convention).
        return "phone" if "Mobile" in user_agent else "tablet"
    if system.startswith("iOS"):
        return "phone"
    if system.split(" ")[0] in _DESKTOP_OS or system in _DESKTOP_OS:
        return "desktop"
    return "unknown"
