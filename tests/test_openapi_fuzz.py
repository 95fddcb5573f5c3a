"""schemathesis against a real API process: every operation of /openapi.json, all checks.

Bounded (a few examples per operation) to stay well under a minute; it fails on any 5xx or
any answer the document does not describe. Each case gets a fresh token, so a case that
signs out (its own or every session) does not blind the cases after it.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.api.openapi import build_openapi
from tests.conftest import PASSWORD, RedisServer
from tests.processes import Process, running
from tests.test_admin_api import ADMIN_TOKEN

schema = schemathesis.openapi.from_dict(build_openapi(admin=True))
# Valid and invalid input alike: invalid input must get a documented 4xx, never a 5xx.
schema.config.generation.update(modes=list(schemathesis.GenerationMode))


@pytest.fixture(scope="module")
def api(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    # Sign-ins with made-up names fail by the hundred here; the limiter is tested elsewhere.
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    with running(
        "service", redis_server.url, tmp, LOGIN_MAX_FAILURES="1000000", ADMIN_TOKEN=ADMIN_TOKEN
    ) as process:
        yield process


def fresh_token(url: str) -> str:
    body = json.dumps({"username": "alice", "password": PASSWORD}).encode()
    request = urllib.request.Request(
        url + "/login", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())["token"]  # type: ignore[no-any-return]


@schema.parametrize()
@hypothesis.settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    database=None,
)
def test_the_api_does_what_its_document_says(case: schemathesis.Case, api: Process) -> None:
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
        # The headers are the invalid part (a missing or bad Authorization, say): sent as
        # generated, since our own token would make the case a valid one.
        case.call_and_validate(base_url=api.url)
        return
    token = ADMIN_TOKEN if case.path.startswith("/admin/") else fresh_token(api.url)
    # A webhook URL of the right shape may still be refused (422 webhook_url_refused): its
    # host must resolve to public addresses, which no schema can say.
    policy = [positive_data_acceptance] if case.path.startswith("/admin/webhooks") else []
    case.call_and_validate(
        base_url=api.url, headers={"Authorization": f"Bearer {token}"}, excluded_checks=policy
    )
