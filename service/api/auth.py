"""Who is calling, for every handler of a signed-in device: the credential the request
presents (bearer or cookie), its live session, and, for a cookie, the CSRF check."""

from __future__ import annotations

from aiohttp import web

from service.api import csrf
from service.api.appkeys import AUTH
from service.runtime.credentials import Via, presented
from service.sessions.callers import Caller


async def caller_of(request: web.Request, *, method: str | None = None) -> Caller:
    """The caller, or TokenError / SessionGone (401) or ApiError 403 `csrf_refused`.

    `method` is the one to judge when it is not the request's own (forward auth). The
    session is checked first, so only a live cookie gets as far as the CSRF check (and its
    log line).
    """
    credential = presented(request)
    caller = await request.app[AUTH].check(credential.token)
    if credential.via is Via.COOKIE and (method or request.method) in csrf.UNSAFE_METHODS:
        csrf.check(request)
    return caller
