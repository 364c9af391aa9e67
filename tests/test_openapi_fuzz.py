"""Schemathesis against the published OpenAPI schema: no 5xx, and answers match the schema.

The API runs under uvicorn on a free loopback port (as in production, lifespan included), bound to
this test's Redis slice and to the simulator; every operation of ``/schema/openapi.json`` gets a
bounded number of generated requests, authenticated with a test API key.

Two operations read their body themselves, so the published schema may not describe it: the
multipart upload of ``POST /v1/documents`` and Monite's push intake. Where it does not, the test
describes them from the Structs that check them, so they are fuzzed too; pushes are signed with
the intake's secret, so that generated bodies get past the signature to the code that reads them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import msgspec
import pytest
import schemathesis
import uvicorn
from redis.asyncio import Redis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.app import create_app
from service.api.bodies import DocumentFieldsIn, DocumentUrlIn
from service.api.push import MonitePush
from service.settings import Settings
from tests.conftest import auth

PUSH_PATH = "/v1/monite/webhooks"
PUSH_SECRET = "whsec_fuzz-push-secret"

EXAMPLES_PER_OPERATION = 30
# Schemathesis' stricter checks (negative_data_rejection, use_after_free …) judge API design
# choices; these judge what the issue asks: no server error, and answers the schema describes.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def served_api(e2e_settings: Settings, redis: Redis) -> Iterator[str]:
    """The API under uvicorn on a free loopback port; yields its base URL."""
    settings = msgspec.structs.replace(
        e2e_settings, api_rate_limit_per_minute=1_000_000, monite_webhook_secret=PUSH_SECRET
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), log_config=None, access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the API did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def _with_read_bodies(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with the bodies the upload and the push intake read, where it lacks them."""
    (fields_ref, url_ref, push_ref), components = msgspec.json.schema_components(
        [DocumentFieldsIn, DocumentUrlIn, MonitePush], ref_template="#/components/schemas/{name}"
    )
    upload = {
        "allOf": [
            fields_ref,
            {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            },
        ]
    }
    documents = spec["paths"]["/v1/documents"]["post"]
    documents.setdefault(
        "requestBody",
        {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": upload},
                "application/json": {"schema": url_ref},
            },
        },
    )
    spec["paths"][PUSH_PATH]["post"].setdefault(
        "requestBody", {"required": True, "content": {"application/json": {"schema": push_ref}}}
    )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, component in components.items():
        schemas.setdefault(name, component)
    return spec


def _call(case: Any, base_url: str) -> Any:
    """Send ``case``; a push is signed over the exact bytes sent, as Monite would sign it."""
    if case.path != PUSH_PATH:
        return case.call(base_url=base_url, headers=auth())
    if case.body is NOT_SET:
        body = b""
    elif isinstance(case.body, bytes):  # a negative case may send non-JSON bytes
        body = case.body
    else:
        body = json.dumps(case.body).encode()
    t = str(int(time.time()))
    v1 = hmac.new(PUSH_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"Monite-Signature": f"t={t},v1={v1}", "content-type": "application/json"}
    return case.call(base_url=base_url, headers=headers, data=body)


def fuzz(base_url: str, mode: GenerationMode) -> list[str]:
    """Run every operation with generated requests of ``mode``; the failures found."""
    published = httpx.get(f"{base_url}/schema/openapi.json").json()
    schema = schemathesis.openapi.from_dict(_with_read_bodies(published))
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the schema lists no operations"
    for operation in operations:

        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            case.validate_response(_call(case, base_url), checks=CHECKS)

        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            continue  # nothing of this operation can be made invalid (no parameters, no body)
        except (AssertionError, BaseExceptionGroup) as exc:  # report every failing operation
            failures.append(f"{operation.label}: {exc}")
    return failures


def test_valid_requests_get_answers_that_match_the_schema(served_api: str) -> None:
    failures = fuzz(served_api, GenerationMode.POSITIVE)
    assert not failures, "\n\n".join(failures)


def test_invalid_requests_get_documented_client_errors_never_a_server_error(
    served_api: str,
) -> None:
    failures = fuzz(served_api, GenerationMode.NEGATIVE)
    assert not failures, "\n\n".join(failures)
