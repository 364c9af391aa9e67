"""The error rules of docs/errors.md, route by route: one status for one kind of mistake.

400 the request does not match the published schema (syntax, type, range, unknown field or
query parameter, empty body); 413 too large; 415 a content type the route does not take;
422 valid by the schema but refused by a rule it cannot state; 409 the watch's state forbids it.
Multipart and JSON share each field's rules.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from arq.worker import Worker
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from service.api.app import create_app
from service.api.request_rules import JSON_BODY_LIMIT
from service.settings import Settings
from service.simulator import SimulatorControl
from tests.conftest import Receiver, auth
from tests.test_api_watches import TASK
from tests.test_documents import PDF
from tests.test_end_to_end import ENTITY, register, settled

Client = AsyncTestClient[Any]
WATCH_ID = "wat_01M8JF29Z3B0SBWEQWFF7NRBZQ"
UPLOAD_LIMIT = 4096

# Every operation of the published API with a concrete path: the table the rules run over.
ROUTES = [
    ("GET", "/v1/watches"),
    ("POST", "/v1/watches"),
    ("POST", "/v1/watches/redeliver"),
    ("GET", f"/v1/watches/{WATCH_ID}"),
    ("DELETE", f"/v1/watches/{WATCH_ID}"),
    ("GET", f"/v1/watches/{WATCH_ID}/deliveries"),
    ("POST", f"/v1/watches/{WATCH_ID}/redeliver"),
    ("POST", f"/v1/watches/{WATCH_ID}/rotate-secret"),
    ("GET", "/v1/events/evt_01M8JF29Z3B0SBWEQWFF7NRBZQ"),
    ("POST", "/v1/documents"),
    ("GET", "/v1/schema/event"),
    ("POST", "/v1/monite/webhooks"),
]
# Routes that take a JSON body.
JSON_ROUTES = ["/v1/watches", "/v1/watches/redeliver", "/v1/documents"]


@pytest.fixture
async def api(e2e_settings: Settings, redis: Redis) -> AsyncIterator[Client]:
    """The API against the simulator, with a small ``MAX_UPLOAD_BYTES``."""
    settings = msgspec.structs.replace(e2e_settings, max_upload_bytes=UPLOAD_LIMIT)
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


def _problem(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    doc: dict[str, Any] = answer.json()
    assert doc["status"] == status
    return doc


def _fields(doc: dict[str, Any]) -> list[str]:
    return [e["field"] for e in doc.get("errors") or []]


async def test_the_table_lists_every_published_v1_operation(api: Client) -> None:
    spec = (await api.get("/schema/openapi.json")).json()
    published = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        if path.startswith("/v1/")
        for method in item
    }
    listed = {
        (
            method,
            path.replace(WATCH_ID, "{watch_id}").replace(
                "evt_01M8JF29Z3B0SBWEQWFF7NRBZQ", "{event_id}"
            ),
        )
        for method, path in ROUTES
    }
    assert listed == published


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_an_unknown_query_parameter_is_a_400_naming_it(
    api: Client, method: str, path: str
) -> None:
    answer = await api.request(
        method, path, params={"metadata.erp_ref": "PO-1"}, headers=auth(), json={}
    )
    assert _fields(_problem(answer, 400)) == ["metadata.erp_ref"]


async def test_a_known_query_parameter_with_an_unknown_one_still_names_only_the_unknown(
    api: Client,
) -> None:
    answer = await api.get("/v1/watches", params={"state": "polling", "sate": "x"}, headers=auth())
    assert _fields(_problem(answer, 400)) == ["sate"]


@pytest.mark.parametrize("path", JSON_ROUTES)
async def test_an_empty_body_is_a_400_naming_the_body_without_internals(
    api: Client, path: str
) -> None:
    answer = await api.post(
        path, content=b"", headers={**auth(), "content-type": "application/json"}
    )
    doc = _problem(answer, 400)
    assert _fields(doc) == ["body"]
    assert "'data'" not in doc["detail"]


@pytest.mark.parametrize("path", JSON_ROUTES)
async def test_a_body_that_is_not_json_is_a_400_naming_the_body(api: Client, path: str) -> None:
    answer = await api.post(
        path, content=b"{nope", headers={**auth(), "content-type": "application/json"}
    )
    assert _fields(_problem(answer, 400)) == ["body"]


@pytest.mark.parametrize("path", JSON_ROUTES)
async def test_a_form_body_is_a_415(api: Client, path: str) -> None:
    answer = await api.post(path, data={"task_id": TASK}, headers=auth())
    _problem(answer, 415)


@pytest.mark.parametrize("path", JSON_ROUTES)
async def test_a_json_body_over_64_kib_is_a_413_before_it_is_parsed(api: Client, path: str) -> None:
    oversized = b'{"callback_url": "' + b"x" * JSON_BODY_LIMIT + b'"}'
    answer = await api.post(
        path, content=oversized, headers={**auth(), "content-type": "application/json"}
    )
    assert _fields(_problem(answer, 413)) == ["body"]


def _json_watch(receiver: Receiver, **fields: Any) -> tuple[str, dict[str, Any]]:
    return "/v1/watches", {"json": {"task_id": TASK, "callback_url": receiver.url, **fields}}


def _json_document(receiver: Receiver, **fields: Any) -> tuple[str, dict[str, Any]]:
    body = {"file_url": "https://files.example.com/a.pdf", "callback_url": receiver.url}
    return "/v1/documents", {"json": {**body, **fields}}


def _upload(receiver: Receiver, **fields: Any) -> tuple[str, dict[str, Any]]:
    form = {"callback_url": receiver.url, **{k: str(v) for k, v in fields.items()}}
    return "/v1/documents", {
        "files": {"file": ("a.pdf", PDF[:1024], "application/pdf")},
        "data": form,
    }


WAYS_IN = {"watch": _json_watch, "document_url": _json_document, "upload": _upload}
# Field values every way in must refuse alike: (fields, status, field named).
SAME_ANSWER = {
    "secret_prefix_only": ({"secret": "whsec_"}, 400, "secret"),
    "secret_not_base64": ({"secret": "whsec_not*base64"}, 400, "secret"),
    "secret_of_3_bytes": ({"secret": "whsec_YWJj"}, 400, "secret"),
    "deadline_superscript": ({"deadline_s": "²"}, 400, "deadline_s"),
    "deadline_zero": ({"deadline_s": 0}, 400, "deadline_s"),
    "entity_not_uuid": ({"entity_id": "123"}, 400, "entity_id"),
    "unknown_field": ({"colour": "blue"}, 400, "colour"),
    "callback_refused": ({"callback_url": "http://169.254.169.254/x"}, 422, "callback_url"),
}


@pytest.mark.parametrize("way", WAYS_IN)
@pytest.mark.parametrize("case", SAME_ANSWER)
async def test_one_mistake_gets_one_answer_whichever_way_it_comes_in(
    api: Client, receiver: Receiver, simulator: SimulatorControl, way: str, case: str
) -> None:
    fields, status, field = SAME_ANSWER[case]
    path, request = WAYS_IN[way](receiver, **fields)
    answer = await api.post(path, headers=auth(), **request)
    assert _fields(_problem(answer, status)) == [field]
    assert (await simulator.counters()).tasks == 0


async def test_an_upload_over_max_upload_bytes_is_a_413_before_monite(
    api: Client, receiver: Receiver, simulator: SimulatorControl
) -> None:
    oversized = b"%PDF-1.7\n" + b"0" * UPLOAD_LIMIT
    answer = await api.post(
        "/v1/documents",
        files={"file": ("big.pdf", oversized, "application/pdf")},
        data={"callback_url": receiver.url},
        headers=auth(),
    )
    assert _fields(_problem(answer, 413)) == ["file"]
    assert (await simulator.counters()).tasks == 0


async def test_an_upload_of_exactly_max_upload_bytes_is_taken(
    api: Client, receiver: Receiver, simulator: SimulatorControl
) -> None:
    exact = b"%PDF-1.7\n" + b"0" * (UPLOAD_LIMIT - 9)
    answer = await api.post(
        "/v1/documents",
        files={"file": ("exact.pdf", exact, "application/pdf")},
        data={"callback_url": receiver.url},
        headers=auth(),
    )
    assert answer.status_code == 202, answer.text
    assert (await simulator.counters()).tasks == 1


@pytest.mark.parametrize("outcome", ["success", "error"])
async def test_cancelling_a_watch_that_already_ended_is_a_409_and_changes_nothing(
    api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver, outcome: str
) -> None:
    task = await simulator.create_task(entity_id=ENTITY, outcome=outcome)
    watch = await register(api, task.id, receiver.url)
    ended = await settled(api, watch["id"])

    answer = await api.delete(f"/v1/watches/{watch['id']}", headers=auth())

    doc = _problem(answer, 409)
    assert _fields(doc) == ["state"]
    assert ended["state"] in doc["detail"]
    after = (await api.get(f"/v1/watches/{watch['id']}", headers=auth())).json()
    assert after["state"] == ended["state"]
