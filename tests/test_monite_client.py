"""The Monite client against the project's simulator: typed results, shared token, rate budget.

Every client here gets its own httpx client and Redis connection, like separate worker processes;
what they share goes through the test's Redis slice. The simulator's counters prove what reached
Monite.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec
import pytest
from redis.asyncio import Redis

from service import metrics
from service.domain.monite_models import decode_task
from service.monite import (
    MoniteClient,
    MoniteListOk,
    MoniteNotFound,
    MoniteOk,
    MoniteRateLimited,
    MoniteRejected,
    MoniteUnauthorized,
    MoniteUnavailable,
    build_monite_http,
    credentials_id,
)
from service.settings import Settings
from service.simulator import SimulatorControl
from service.storage.keys import Keys
from tests.conftest import TEST_REDIS_URL, Receiver, Reply

ClientFactory = Callable[..., MoniteClient]


@pytest.fixture
async def make_client(
    settings: Settings, simulator: SimulatorControl, redis: Redis
) -> AsyncIterator[ClientFactory]:
    """Build clients of the simulator; each has its own HTTP client and Redis connection."""
    opened: list[Any] = []

    def make(**overrides: Any) -> MoniteClient:
        values = {
            "monite_base_url": simulator.base_url,
            "monite_client_id": simulator.client_id,
            "monite_client_secret": simulator.client_secret,
            **overrides,
        }
        client_settings = msgspec.structs.replace(settings, **values)
        connection: Redis = Redis.from_url(TEST_REDIS_URL)
        http = build_monite_http(client_settings)
        opened.extend((connection, http))
        return MoniteClient(client_settings, connection, http, Keys(client_settings.key_prefix))

    yield make
    for resource in opened:
        await resource.aclose()


async def _count(simulator: SimulatorControl, operation: str, status: int | None = None) -> int:
    """Requests the simulator answered, of every client (a revoked token names none)."""
    counters = await simulator.counters()
    return sum(
        n
        for client in counters.clients.values()
        for code, n in client.by_endpoint.get(operation, {}).items()
        if status is None or code == str(status)
    )


def _requests_metric(endpoint: str, status: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "ocr_relay_monite_requests_total", {"endpoint": endpoint, "status": status}
    )
    return value or 0.0


# -- tasks ---------------------------------------------------------------------------------------
async def test_get_task_returns_the_task_json(
    make_client: ClientFactory, simulator: SimulatorControl
) -> None:
    created = await simulator.create_task(document_type="invoice")

    result = await make_client().get_task(created.id, None)

    assert isinstance(result, MoniteOk)
    task = decode_task(result.body)
    assert (task.id, task.status) == (created.id, "success")


async def test_get_unknown_task_is_not_found(make_client: ClientFactory) -> None:
    result = await make_client().get_task(str(uuid.uuid4()), None)

    assert result == MoniteNotFound()


async def test_get_task_with_a_malformed_id_is_rejected_without_asking_monite(
    make_client: ClientFactory, simulator: SimulatorControl
) -> None:
    result = await make_client().get_task("../auth/revoke", None)

    assert isinstance(result, MoniteRejected)
    assert result.status == 422
    assert await _count(simulator, "get_ocr_tasks_id") == 0


async def test_entity_header_scopes_the_task(
    make_client: ClientFactory, simulator: SimulatorControl
) -> None:
    entity = str(uuid.uuid4())
    client = make_client()
    created = await client.create_task_from_url(
        "https://files.example.com/invoice.pdf", "invoice", entity
    )
    assert isinstance(created, MoniteOk)
    task_id = decode_task(created.body).id

    assert isinstance(await client.get_task(task_id, entity), MoniteOk)
    assert await client.get_task(task_id, None) == MoniteNotFound()


async def test_create_task_from_url_answers_202_with_the_new_task(
    make_client: ClientFactory,
) -> None:
    client = make_client()

    result = await client.create_task_from_url("https://files.example.com/r.png", "receipt", None)

    assert isinstance(result, MoniteOk)
    assert result.status == 202
    task = decode_task(result.body)
    assert task.document_type == "receipt"
    assert isinstance(await client.get_task(task.id, None), MoniteOk)


async def test_upload_file_creates_a_task(make_client: ClientFactory) -> None:
    result = await make_client().upload_file(
        "invoice.pdf", b"%PDF-1.7 fake", "application/pdf", "invoice", None
    )

    assert isinstance(result, MoniteOk)
    assert result.status == 202
    assert decode_task(result.body).document_type == "invoice"


async def test_upload_over_monites_size_limit_is_rejected_with_its_message(
    make_client: ClientFactory, simulator: SimulatorControl
) -> None:
    await simulator.configure(max_upload_bytes=10)

    result = await make_client().upload_file("big.pdf", b"x" * 100, "application/pdf", None, None)

    assert isinstance(result, MoniteRejected)
    assert result.status == 413
    assert "size" in result.message.lower()


async def test_list_tasks_splits_ids_into_batches_of_100_and_returns_every_known_task(
    make_client: ClientFactory, simulator: SimulatorControl
) -> None:
    known = [(await simulator.create_task()).id for _ in range(120)]
    unknown = [str(uuid.uuid4()) for _ in range(5)]
    batches_before = metrics.REGISTRY.get_sample_value("ocr_relay_monite_batch_size_count") or 0

    result = await make_client(monite_rate_limit=100.0).list_tasks(known + unknown, None)

    assert isinstance(result, MoniteListOk)
    assert sorted(decode_task(item).id for item in result.items) == sorted(known)
    assert await _count(simulator, "get_ocr_tasks") == 2
    assert metrics.REGISTRY.get_sample_value("ocr_relay_monite_batch_size_count") == (
        batches_before + 2
    )


async def test_list_tasks_of_unknown_ids_is_an_empty_list(make_client: ClientFactory) -> None:
    result = await make_client().list_tasks([str(uuid.uuid4())], None)

    assert result == MoniteListOk(items=[])


async def test_requests_are_counted_by_endpoint_and_status(
    make_client: ClientFactory,
) -> None:
    before = _requests_metric("get_task", "404")

    await make_client().get_task(str(uuid.uuid4()), None)

    assert _requests_metric("get_task", "404") == before + 1


# -- the shared token ----------------------------------------------------------------------------
async def test_two_workers_share_one_token_request(
    make_client: ClientFactory, simulator: SimulatorControl
) -> None:
    task = await simulator.create_task()
    workers = [make_client(monite_rate_limit=100.0), make_client(monite_rate_limit=100.0)]

    results = await asyncio.gather(
        *(worker.get_task(task.id, None) for worker in workers for _ in range(10))
    )

    assert all(isinstance(result, MoniteOk) for result in results)
    assert await _count(simulator, "post_auth_token") == 1


async def test_token_is_refreshed_before_it_expires(
    make_client: ClientFactory, simulator: SimulatorControl
) -> None:
    await simulator.configure(token_ttl_s=2)
    task = await simulator.create_task()
    client = make_client()
    assert isinstance(await client.get_task(task.id, None), MoniteOk)

    await asyncio.sleep(1.0)  # past the refresh point (half of a 2 s lifetime), before expiry
    result = await client.get_task(task.id, None)

    assert isinstance(result, MoniteOk)
    assert await _count(simulator, "post_auth_token") == 2
    assert await _count(simulator, "get_ocr_tasks_id", 401) == 0


async def test_two_workers_refresh_a_token_due_for_refresh_once(
    make_client: ClientFactory, simulator: SimulatorControl
) -> None:
    await simulator.configure(token_ttl_s=2)
    task = await simulator.create_task()
    workers = [make_client(monite_rate_limit=100.0), make_client(monite_rate_limit=100.0)]
    assert isinstance(await workers[0].get_task(task.id, None), MoniteOk)
    assert isinstance(await workers[1].get_task(task.id, None), MoniteOk)

    await asyncio.sleep(1.0)  # past the refresh point, before expiry
    results = await asyncio.gather(
        *(worker.get_task(task.id, None) for worker in workers for _ in range(5))
    )

    assert all(isinstance(result, MoniteOk) for result in results)
    assert await _count(simulator, "post_auth_token") == 2


async def test_revoked_token_is_replaced_once_and_the_call_retried(
    make_client: ClientFactory, simulator: SimulatorControl
) -> None:
    task = await simulator.create_task()
    client = make_client()
    assert isinstance(await client.get_task(task.id, None), MoniteOk)
    await simulator.revoke_tokens()

    result = await client.get_task(task.id, None)

    assert isinstance(result, MoniteOk)
    assert await _count(simulator, "post_auth_token") == 2
    assert await _count(simulator, "get_ocr_tasks_id", 401) == 1


async def test_revoked_token_seen_by_two_workers_causes_one_new_token(
    make_client: ClientFactory, simulator: SimulatorControl
) -> None:
    task = await simulator.create_task()
    workers = [make_client(monite_rate_limit=100.0), make_client(monite_rate_limit=100.0)]
    for worker in workers:
        assert isinstance(await worker.get_task(task.id, None), MoniteOk)
    await simulator.revoke_tokens()

    results = await asyncio.gather(
        *(worker.get_task(task.id, None) for worker in workers for _ in range(5))
    )

    assert all(isinstance(result, MoniteOk) for result in results)
    assert await _count(simulator, "post_auth_token") == 2


async def test_wrong_secret_is_unauthorized_and_never_echoed(
    make_client: ClientFactory, simulator: SimulatorControl
) -> None:
    secret = "wrong-secret-do-not-print"
    task = await simulator.create_task()

    result = await make_client(monite_client_secret=secret).get_task(task.id, None)

    assert isinstance(result, MoniteUnauthorized)
    assert secret not in repr(result)
    assert await _count(simulator, "get_ocr_tasks_id") == 0


async def test_static_token_is_used_without_a_token_request(
    make_client: ClientFactory, simulator: SimulatorControl
) -> None:
    task = await simulator.create_task()
    token = await simulator.token()

    result = await make_client(monite_token=token).get_task(task.id, None)

    assert isinstance(result, MoniteOk)
    assert await _count(simulator, "post_auth_token") == 1  # the one this test asked for


async def test_rejected_static_token_is_unauthorized_and_never_echoed(
    make_client: ClientFactory,
) -> None:
    token = "static-token-do-not-print"

    result = await make_client(monite_token=token).get_task(str(uuid.uuid4()), None)

    assert isinstance(result, MoniteUnauthorized)
    assert token not in repr(result)


def test_credentials_id_ignores_the_secret(settings: Settings) -> None:
    one = msgspec.structs.replace(settings, monite_client_id="a", monite_client_secret="s1")
    two = msgspec.structs.replace(settings, monite_client_id="a", monite_client_secret="s2")
    other = msgspec.structs.replace(settings, monite_client_id="b", monite_client_secret="s1")

    assert credentials_id(one) == credentials_id(two) != credentials_id(other)


# -- rate limits and failures --------------------------------------------------------------------
async def test_429_is_rate_limited_and_pauses_every_worker(
    make_client: ClientFactory, simulator: SimulatorControl
) -> None:
    await simulator.configure(rate_limit=0.2, rate_burst=1)
    token = await simulator.token()  # takes the simulator's only request of the next 5 s
    first, second = make_client(monite_token=token), make_client(monite_token=token)

    limited = await first.get_task(str(uuid.uuid4()), None)
    waiting = await second.get_task(str(uuid.uuid4()), None, max_wait_s=0.1)

    assert limited == MoniteRateLimited(retry_after_s=5.0, source="monite")
    assert isinstance(waiting, MoniteRateLimited)
    assert waiting.source == "budget"
    assert waiting.retry_after_s > 4.0
    assert await _count(simulator, "get_ocr_tasks_id", 429) == 1


async def test_server_errors_are_unavailable(
    make_client: ClientFactory, simulator: SimulatorControl
) -> None:
    token = await simulator.token()
    await simulator.chaos(error_rate=1.0)

    result = await make_client(monite_token=token).get_task(str(uuid.uuid4()), None)

    assert isinstance(result, MoniteUnavailable)
    assert result.status in (500, 502, 503)


async def test_truncated_json_is_unavailable(
    make_client: ClientFactory, simulator: SimulatorControl
) -> None:
    task = await simulator.create_task()
    token = await simulator.token()
    await simulator.chaos(malformed_rate=1.0)

    result = await make_client(monite_token=token).get_task(task.id, None)

    assert isinstance(result, MoniteUnavailable)
    assert "malformed" in result.error


async def test_timeout_is_unavailable(
    make_client: ClientFactory, simulator: SimulatorControl
) -> None:
    token = await simulator.token()
    await simulator.chaos(hang_rate=1.0, hang_s=5.0)

    result = await make_client(monite_token=token, monite_timeout_s=0.3).get_task(
        str(uuid.uuid4()), None
    )

    assert isinstance(result, MoniteUnavailable)
    assert result.status is None
    assert "timed out" in result.error


async def test_unreachable_monite_is_unavailable(make_client: ClientFactory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the request: nothing listens there

    result = await make_client(monite_base_url=f"http://127.0.0.1:{port}/v1").get_task(
        str(uuid.uuid4()), None
    )

    assert isinstance(result, MoniteUnavailable)
    assert "network error" in result.error


# -- a scripted Monite on loopback, for answers the simulator never gives ------------------------
def _page(task_ids: list[str], next_token: str | None) -> Reply:
    tasks = [
        {
            "id": t,
            "created_at": "2026-11-20T10:15:00Z",
            "updated_at": "2026-11-20T10:15:00Z",
            "status": "processing",
        }
        for t in task_ids
    ]
    body = {"data": tasks, "next_pagination_token": next_token}
    return Reply(body=msgspec.json.encode(body), headers={"content-type": "application/json"})


async def test_list_follows_pagination_tokens_sending_only_the_token(
    make_client: ClientFactory, receiver: Receiver
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    receiver.script([_page(ids[:2], "page-2"), _page(ids[2:], None)])
    client = make_client(monite_base_url=receiver.url, monite_token="static")

    result = await client.list_tasks(ids, None)

    assert isinstance(result, MoniteListOk)
    assert [decode_task(item).id for item in result.items] == ids
    first, second = (parse_qsl(urlsplit(r.path).query) for r in receiver.requests)
    assert first == [("id__in", i) for i in ids] + [("limit", "100")]
    assert second == [("pagination_token", "page-2")]


async def test_rejection_carries_monites_validation_message(
    make_client: ClientFactory, receiver: Receiver
) -> None:
    detail = {"detail": [{"loc": ["body", "file_url"], "msg": "Field required", "type": "missing"}]}
    receiver.script([Reply(status=422, body=msgspec.json.encode(detail))])
    client = make_client(monite_base_url=receiver.url, monite_token="static")

    result = await client.create_task_from_url("https://files.example.com/a.pdf", None, None)

    assert result == MoniteRejected(422, "body.file_url: Field required")


async def test_malformed_token_answer_is_unavailable_and_not_quoted(
    make_client: ClientFactory, receiver: Receiver
) -> None:
    receiver.script([Reply(body=b'{"access_token": "leaked-token-value", "expires_')])
    client = make_client(monite_base_url=receiver.url)

    result = await client.get_task(str(uuid.uuid4()), None)

    assert isinstance(result, MoniteUnavailable)
    assert "leaked-token-value" not in repr(result)


async def test_requests_carry_version_entity_and_bearer_headers(
    make_client: ClientFactory, receiver: Receiver
) -> None:
    receiver.default = Reply(status=404)
    entity = str(uuid.uuid4())
    client = make_client(monite_base_url=receiver.url, monite_token="static")

    await client.get_task(str(uuid.uuid4()), entity)

    headers = receiver.requests[0].headers
    assert headers["x-monite-version"] == "2024-05-25"
    assert headers["x-monite-entity-id"] == entity
    assert headers["authorization"] == "Bearer static"


def _token_reply(expires_in: bytes) -> Reply:
    body = b'{"access_token": "hostile-endpoint-token"' + expires_in + b"}"
    return Reply(body=body, headers={"content-type": "application/json"})


HOSTILE_EXPIRES_IN = {
    "huge": b', "expires_in": 100000000000000000000',
    "negative": b', "expires_in": -5',
    "zero": b', "expires_in": 0',
    "missing": b"",
    "text": b', "expires_in": "soon"',
    "null": b', "expires_in": null',
    "float_overflow": b', "expires_in": 1e400',
}


@pytest.mark.parametrize("expires_in", HOSTILE_EXPIRES_IN.values(), ids=HOSTILE_EXPIRES_IN.keys())
async def test_a_hostile_token_lifetime_still_lets_the_call_through_with_a_bounded_ttl(
    make_client: ClientFactory,
    receiver: Receiver,
    redis: Redis,
    settings: Settings,
    expires_in: bytes,
) -> None:
    receiver.script([_token_reply(expires_in), Reply(status=404)])
    client = make_client(monite_base_url=receiver.url)

    result = await client.get_task(str(uuid.uuid4()), None)

    assert isinstance(result, MoniteNotFound)
    assert receiver.requests[1].headers["authorization"] == "Bearer hostile-endpoint-token"
    token_key = Keys(settings.key_prefix).monite_token(
        credentials_id(msgspec.structs.replace(settings, monite_base_url=receiver.url))
    )
    assert 0 < await redis.pttl(token_key) <= 86_400_000


async def test_an_unusable_token_lifetime_is_logged_with_the_fallback(
    make_client: ClientFactory, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script([_token_reply(HOSTILE_EXPIRES_IN["text"]), Reply(status=404)])
    client = make_client(monite_base_url=receiver.url)

    await client.get_task(str(uuid.uuid4()), None)

    [warning] = [r for r in caplog.records if "expires_in" in r.getMessage()]
    assert warning.levelname == "WARNING"
    assert warning.__dict__["lifetime_s"] == 300
