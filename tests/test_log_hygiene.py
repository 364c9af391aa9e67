"""No secret reaches a log line: a full run at DEBUG for every logger, grepped for every secret."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import msgspec
import pytest
from arq.worker import Worker
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from service.api.app import create_app
from service.callbacks.sealing import generate_key
from service.domain.signing import generate_secret
from service.logs import JsonFormatter
from service.monite import MoniteClient, MoniteUnauthorized, build_monite_http, credentials_id
from service.settings import Settings
from service.simulator import SimulatorControl
from service.storage.keys import Keys
from tests.conftest import API_KEYS, Receiver, RedisProcess, auth

ENTITY = "9d3c1b2a-1111-4a2b-8c3d-4e5f6a7b8c9d"
WRONG_API_KEY = "ocr_wrong-key-presented-by-a-stranger"
WRONG_MONITE_SECRET = "wrong-monite-client-secret-value"
MONITE_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"monite-push-secret-32-bytes-long").decode()
PUSH = "/v1/monite/webhooks"
REDIS_PASSWORD = "s3cret-redis-password"
Client = AsyncTestClient[Any]


class Captured(logging.Handler):
    """Keeps every record as the service would print it (``JsonFormatter``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[Captured]:
    """Every logger at DEBUG, enabled and propagating to one capturing handler on the root."""
    handler = Captured()
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    saved = [(lg, lg.level, lg.propagate, lg.disabled) for lg in loggers]
    saved_root = root.level
    for lg in loggers:
        lg.setLevel(logging.NOTSET)
        lg.propagate = True
        lg.disabled = False
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    root.setLevel(saved_root)
    for lg, level, propagate, disabled in saved:
        lg.setLevel(level)
        lg.propagate = propagate
        lg.disabled = disabled


@pytest.fixture
def hygiene_settings(e2e_settings: Settings) -> Settings:
    """The end-to-end service with every kind of secret configured."""
    return msgspec.structs.replace(
        e2e_settings,
        secrets_key=(base64.b64decode(generate_key()),),
        monite_webhook_secret=MONITE_WEBHOOK_SECRET,
    )


@pytest.fixture
async def hygiene_api(hygiene_settings: Settings, redis: Redis) -> AsyncIterator[Client]:
    """The API app with ``hygiene_settings``."""
    async with AsyncTestClient(app=create_app(hygiene_settings)) as client:
        yield client


async def settled(api: Client, watch_id: str, within_s: float = 15.0) -> dict[str, Any]:
    """The watch once its delivery is over."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        watch: dict[str, Any] = (await api.get(f"/v1/watches/{watch_id}", headers=auth())).json()
        if watch["state"] in ("delivered", "failed", "cancelled"):
            return watch
        await asyncio.sleep(0.05)
    raise AssertionError(f"watch {watch_id} did not settle")


async def stored_token(redis: Redis, settings: Settings) -> str:
    """The Monite access token the service fetched and shares through Redis."""
    raw = await redis.get(Keys(settings.key_prefix).monite_token(credentials_id(settings)))
    assert raw is not None, "the service holds no Monite token"
    token, _lifetime = msgspec.msgpack.decode(raw)
    return str(token)


async def deliver_one(
    api: Client, simulator: SimulatorControl, receiver: Receiver, **extra: Any
) -> dict[str, Any]:
    """Register a watch of a fresh task and wait until it is delivered; the 201 answer."""
    task = await simulator.create_task(entity_id=ENTITY)
    body = {"task_id": task.id, "callback_url": receiver.url, "entity_id": ENTITY, **extra}
    answer = await api.post("/v1/watches", json=body, headers=auth())
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    assert (await settled(api, created["id"]))["state"] == "delivered"
    return created


def push_of(task_id: str) -> bytes:
    """Monite's ``ocr_task.finished`` push body for one task."""
    return msgspec.json.encode(
        {
            "id": str(uuid.uuid4()),
            "action": "ocr_task.finished",
            "object_type": "ocr_task",
            "object": {"id": task_id},
            "entity_id": ENTITY,
        }
    )


def monite_signed(body: bytes, secret: str = MONITE_WEBHOOK_SECRET) -> dict[str, str]:
    """Headers of a push signed like Monite signs (``t=…,v1=<hex HMAC-SHA256>``)."""
    t = int(time.time())
    v1 = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Monite-Signature": f"t={t},v1={v1}", "content-type": "application/json"}


def forms(secret: str) -> set[str]:
    """A secret as text, and the key inside a ``whsec_`` secret."""
    return {secret, secret.removeprefix("whsec_")}


async def test_a_full_run_logs_no_secret_or_token(
    captured: Captured,
    hygiene_settings: Settings,
    hygiene_api: Client,
    start_worker: Callable[..., Awaitable[Worker]],
    redis: Redis,
    simulator: SimulatorControl,
    receiver: Receiver,
    key_prefix: str,
) -> None:
    api = hygiene_api
    await start_worker(hygiene_settings)
    generated = await deliver_one(api, simulator, receiver)
    given_secret = generate_secret()
    await deliver_one(api, simulator, receiver, secret=given_secret)
    first_token = await stored_token(redis, hygiene_settings)

    rotated = await api.post(f"/v1/watches/{generated['id']}/rotate-secret", headers=auth())
    assert rotated.status_code == 200
    await simulator.revoke_tokens()  # the next poll gets a 401 and fetches a new token
    await deliver_one(api, simulator, receiver)
    redelivered = await api.post(f"/v1/watches/{generated['id']}/redeliver", headers=auth())
    assert redelivered.status_code == 202, redelivered.text
    assert (await settled(api, generated["id"]))["state"] == "delivered"
    second_token = await stored_token(redis, hygiene_settings)
    assert second_token != first_token

    refused = await api.get("/v1/watches", headers={"Authorization": f"Bearer {WRONG_API_KEY}"})
    assert refused.status_code == 401
    push = push_of(generated["task_id"])
    assert (await api.post(PUSH, content=push, headers=monite_signed(push))).status_code == 200
    forged = monite_signed(push, WRONG_MONITE_SECRET)
    assert (await api.post(PUSH, content=push, headers=forged)).status_code == 401

    wrong = msgspec.structs.replace(hygiene_settings, monite_client_secret=WRONG_MONITE_SECRET)
    async with build_monite_http(wrong) as http:
        monite = MoniteClient(wrong, redis, http, Keys(f"{key_prefix}wrong:"))
        assert isinstance(await monite.get_task(generated["task_id"], ENTITY), MoniteUnauthorized)

    secrets: dict[str, set[str]] = {
        "API key": {*API_KEYS.values(), WRONG_API_KEY},
        "Monite client secret": {hygiene_settings.monite_client_secret or "", WRONG_MONITE_SECRET},
        "Monite access token": {first_token, second_token},
        "webhook secret": forms(generated["secret"])
        | forms(given_secret)
        | forms(rotated.json()["secret"]),
        "Monite webhook secret": forms(MONITE_WEBHOOK_SECRET),
        "SECRETS_KEY": {base64.b64encode(k).decode() for k in hygiene_settings.secrets_key},
    }
    text = "\n".join(captured.lines)
    # The capture saw the run: deliveries, the token refresh, the rejected credentials.
    assert text.count('"delivery attempt"') >= 4
    assert "Monite refused the access token" in text
    assert "Monite rejected the client credentials" in text
    leaks = [
        (kind, line)
        for kind, values in secrets.items()
        for value in values
        if value
        for line in captured.lines
        if value in line
    ]
    assert leaks == []


async def test_a_redis_outage_logs_no_redis_password(
    captured: Captured,
    hygiene_settings: Settings,
    private_redis: Callable[..., RedisProcess],
    serving: Callable[..., asyncio.Task[None]],
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    server = private_redis(extra_args=["--requirepass", REDIS_PASSWORD])
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{server.port}/0"
    settings = msgspec.structs.replace(hygiene_settings, redis_url=url, redis_timeout_s=0.5)
    async with AsyncTestClient(app=create_app(settings)) as api:
        serving(settings)
        await deliver_one(api, simulator, receiver)
        server.stop()
        assert (await api.get("/v1/watches", headers=auth())).status_code == 503
        for _ in range(300):  # until the worker has noticed, 15 s at most
            if any("restarting the worker" in line for line in captured.lines):
                break
            await asyncio.sleep(0.05)
        server.start()
        await deliver_one(api, simulator, receiver)
    text = "\n".join(captured.lines)
    assert "redis unreachable" in text  # the capture saw the outage
    assert REDIS_PASSWORD not in text
