"""The activity log: a user's recent session events and failed sign-ins, newest first, from
their capped log and their record of failures."""

from __future__ import annotations

from aiohttp import web

from service.api.auth import caller_of
from service.api.problems import validation_error
from service.runtime.appkeys import EVENTS
from service.runtime.responses import json_response
from service.wire.schemas import ACTIVITY_LIMIT_DEFAULT, ACTIVITY_LIMIT_MAX, ActivityResponse

routes = web.RouteTableDef()


@routes.get("/activity")
async def activity(request: web.Request) -> web.Response:
    caller = await caller_of(request)
    return await activity_of(request, caller.username)


async def activity_of(request: web.Request, username: str) -> web.Response:
    """The answer to `/activity` for `username`, as many events as `?limit=` asks."""
    limit, log = _limit(request), request.app[EVENTS]
    events = [event.to_activity() for event in await log.recent(username, limit)]
    events += [window.to_activity() for window in await log.failures(username, limit)]
    events.sort(key=lambda event: event.at, reverse=True)
    return json_response(ActivityResponse(events=events[:limit]))


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return ACTIVITY_LIMIT_DEFAULT
    # ASCII digits, and few: int() takes other scripts' digits, and raises past 4300 of them.
    short_number = raw.isascii() and raw.isdigit() and len(raw) <= 3
    if not (short_number and 1 <= int(raw) <= ACTIVITY_LIMIT_MAX):
        raise validation_error("limit", f"a whole number from 1 to {ACTIVITY_LIMIT_MAX}")
    return int(raw)
