"""The admin API's webhooks: endpoints, their secrets, deliveries and replays.

Under the admin token like the rest of /admin (service/api/admin.py). URLs are checked
here (form and where they resolve) and again by the worker at each delivery.
"""

from __future__ import annotations

import logging
from datetime import UTC

from aiohttp import web

from service.api.admin import authorize
from service.api.appkeys import DELIVERIES, OUTBOX, WEBHOOKS
from service.api.inputs import decode_body
from service.api.problems import ApiError, validation_error
from service.events import urls
from service.events.endpoints import Endpoint
from service.runtime.appkeys import SETTINGS
from service.runtime.responses import json_response
from service.wire.schemas import (
    DELIVERIES_LIMIT_DEFAULT,
    DELIVERIES_LIMIT_MAX,
    EVENT_TYPES,
    DeliveriesResponse,
    ReplayRequest,
    ReplayResponse,
    SecretResponse,
    WebhookCreated,
    WebhookCreateRequest,
    WebhookPatchRequest,
    WebhooksResponse,
)

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.post("/admin/webhooks")
async def create(request: web.Request) -> web.Response:
    await authorize(request)
    body = await decode_body(request, WebhookCreateRequest, _timeout(request))
    await _check_url(request, body.url)
    endpoint = await request.app[WEBHOOKS].create(
        body.url, body.events or EVENT_TYPES, body.description
    )
    log.info("webhook endpoint %s created for %s", endpoint.id, _host(endpoint.url))
    created = WebhookCreated(**_fields(endpoint), secret=endpoint.secret)
    return json_response(created, status=201)


@routes.get("/admin/webhooks")
async def list_all(request: web.Request) -> web.Response:
    await authorize(request)
    endpoints = await request.app[WEBHOOKS].all()
    return json_response(WebhooksResponse(webhooks=[e.to_wire() for e in endpoints]))


@routes.get("/admin/webhooks/{webhook_id}")
async def get(request: web.Request) -> web.Response:
    await authorize(request)
    endpoint = await request.app[WEBHOOKS].get(request.match_info["webhook_id"])
    last = await request.app[DELIVERIES].last(endpoint.id)
    return json_response(endpoint.to_wire(last.to_wire() if last else None))


@routes.patch("/admin/webhooks/{webhook_id}")
async def patch(request: web.Request) -> web.Response:
    await authorize(request)
    store = request.app[WEBHOOKS]
    endpoint = await store.get(request.match_info["webhook_id"])
    body = await decode_body(request, WebhookPatchRequest, _timeout(request))
    if body.url is not None:
        await _check_url(request, body.url)
    changed = await store.update(
        endpoint.id,
        url=body.url,
        events=body.events,
        status=body.status,
        description=body.description,
    )
    if body.status and body.status != endpoint.status:
        log.info("webhook endpoint %s %s by the admin API", endpoint.id, body.status)
    return json_response(changed.to_wire())


@routes.delete("/admin/webhooks/{webhook_id}")
async def delete(request: web.Request) -> web.Response:
    await authorize(request)
    endpoint = await request.app[WEBHOOKS].get(request.match_info["webhook_id"])
    await request.app[WEBHOOKS].delete(endpoint.id)
    await request.app[DELIVERIES].forget(endpoint.id)
    log.info("webhook endpoint %s deleted", endpoint.id)
    return web.Response(status=204)


@routes.post("/admin/webhooks/{webhook_id}/rotate-secret")
async def rotate_secret(request: web.Request) -> web.Response:
    await authorize(request)
    secret = await request.app[WEBHOOKS].rotate(request.match_info["webhook_id"])
    log.info("webhook endpoint %s has a new secret", request.match_info["webhook_id"])
    return json_response(SecretResponse(secret=secret))


@routes.get("/admin/webhooks/{webhook_id}/deliveries")
async def deliveries(request: web.Request) -> web.Response:
    await authorize(request)
    endpoint = await request.app[WEBHOOKS].get(request.match_info["webhook_id"])
    records = await request.app[DELIVERIES].recent(endpoint.id, _limit(request))
    return json_response(DeliveriesResponse(deliveries=[r.to_wire() for r in records]))


@routes.post("/admin/webhooks/{webhook_id}/replay")
async def replay(request: web.Request) -> web.Response:
    await authorize(request)
    endpoint = await request.app[WEBHOOKS].get(request.match_info["webhook_id"])
    body = await decode_body(request, ReplayRequest, _timeout(request))
    if body.since.tzinfo is None:
        raise validation_error("since", "an RFC 3339 time with its offset (Z or +hh:mm)")
    since_ms = max(0, int(body.since.astimezone(UTC).timestamp() * 1000))
    now_ms = request.app[WEBHOOKS].clock.now_ms()
    queued = await request.app[OUTBOX].replay(endpoint.subscriber, since_ms, now_ms)
    log.info(
        "webhook endpoint %s: %d events since %s queued again", endpoint.id, queued, body.since
    )
    return json_response(ReplayResponse(queued=queued), status=202)


async def _check_url(request: web.Request, url: str) -> None:
    try:
        await urls.check_configured(url, request.app[SETTINGS])
    except urls.UrlRefused as exc:
        raise ApiError(422, "webhook_url_refused", "Webhook URL refused", str(exc)) from None


def _fields(endpoint: Endpoint) -> dict[str, object]:
    wire = endpoint.to_wire()
    return {f: getattr(wire, f) for f in wire.__struct_fields__}


def _host(url: str) -> str:
    return urls.parse(url, allow_http=True).hostname or "?"


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DELIVERIES_LIMIT_DEFAULT
    short_number = raw.isascii() and raw.isdigit() and len(raw) <= 3
    if not (short_number and 1 <= int(raw) <= DELIVERIES_LIMIT_MAX):
        raise validation_error("limit", f"a whole number from 1 to {DELIVERIES_LIMIT_MAX}")
    return int(raw)


def _timeout(request: web.Request) -> int:
    return request.app[SETTINGS].request_timeout
