"""Webhook secrets at rest: sealed with SECRETS_KEY, readable across key rotation and legacy."""

from __future__ import annotations

import asyncio
import base64
import logging
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from arq.worker import Worker
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from service.api.app import create_app
from service.callbacks.sealing import PLAIN_PREFIX, SEALED_PREFIX, Sealer, SealError, generate_key
from service.cli.devstack import dev_secrets_key
from service.domain.signing import generate_secret, verify_signature
from service.settings import Settings
from service.simulator import SimulatorControl
from service.storage.keys import Keys
from tests.conftest import Receiver, auth

KEY_OLD = bytes(range(32))
KEY_NEW = bytes(range(100, 132))
SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
ENTITY = "9d3c1b2a-1111-4a2b-8c3d-4e5f6a7b8c9d"
TASK = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


def test_a_sealed_secret_opens_to_the_same_secret() -> None:
    sealer = Sealer([KEY_OLD])
    assert sealer.unseal(sealer.seal(SECRET)) == SECRET


def test_a_sealed_value_is_self_describing_and_hides_the_secret() -> None:
    sealed = Sealer([KEY_OLD]).seal(SECRET)
    assert sealed.startswith(SEALED_PREFIX)
    assert SECRET not in sealed
    assert SECRET.removeprefix("whsec_") not in sealed


def test_sealing_twice_gives_different_values() -> None:
    sealer = Sealer([KEY_OLD])
    assert sealer.seal(SECRET) != sealer.seal(SECRET)


def test_a_wrong_key_fails_clearly_without_revealing_anything() -> None:
    sealed = Sealer([KEY_OLD]).seal(SECRET)
    with pytest.raises(SealError, match="not in SECRETS_KEY") as caught:
        Sealer([KEY_NEW]).unseal(sealed)
    assert SECRET not in str(caught.value)
    assert base64.b64encode(KEY_OLD).decode() not in str(caught.value)


def test_a_sealed_value_without_any_key_configured_says_so() -> None:
    sealed = Sealer([KEY_OLD]).seal(SECRET)
    with pytest.raises(SealError, match="SECRETS_KEY is not set"):
        Sealer([]).unseal(sealed)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-4] + ("AAAA" if not s.endswith("AAAA") else "BBBB"),
        lambda s: s[:12],
        lambda s: s + "!*",
    ],
    ids=["altered", "truncated", "not-base64"],
)
def test_an_altered_sealed_value_is_refused(mangle: Callable[[str], str]) -> None:
    sealer = Sealer([KEY_OLD])
    with pytest.raises(SealError):
        sealer.unseal(mangle(sealer.seal(SECRET)))


def test_without_a_key_secrets_are_stored_as_marked_plain_values() -> None:
    sealer = Sealer([])
    stored = sealer.seal(SECRET)
    assert stored == PLAIN_PREFIX + SECRET
    assert not sealer.seals
    assert Sealer([KEY_OLD]).unseal(stored) == SECRET


def test_a_value_stored_before_sealing_existed_is_used_as_it_is() -> None:
    assert Sealer([KEY_OLD]).unseal(SECRET) == SECRET


def test_after_key_rotation_the_new_key_seals_and_the_old_one_still_opens() -> None:
    old_sealed = Sealer([KEY_OLD]).seal(SECRET)
    rotated = Sealer([KEY_NEW, KEY_OLD])
    new_sealed = rotated.seal(SECRET)
    assert rotated.unseal(old_sealed) == SECRET
    assert Sealer([KEY_NEW]).unseal(new_sealed) == SECRET
    with pytest.raises(SealError):
        Sealer([KEY_OLD]).unseal(new_sealed)


def test_a_generated_key_is_accepted_by_the_settings() -> None:
    key = generate_key()
    settings = Settings.from_env({"SECRETS_KEY": key})
    assert settings.secrets_key == (base64.b64decode(key),)


def test_a_missing_key_is_warned_about_once_and_a_present_one_not_at_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="ocr_relay.sealing"):
        Sealer.from_settings(Settings())
        Sealer.from_settings(Settings(secrets_key=(KEY_OLD,)))
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING
    assert "SECRETS_KEY is not set" in warning.getMessage()


# --- the API stores sealed secrets ---


@pytest.fixture
def sealing_settings(service_settings: Settings) -> Settings:
    """The full service with a sealing key."""
    return msgspec.structs.replace(service_settings, secrets_key=(KEY_OLD,))


@pytest.fixture
async def sealing_api(
    sealing_settings: Settings, redis: Redis
) -> AsyncIterator[AsyncTestClient[Any]]:
    """The API with a sealing key, on this test's Redis slice."""
    async with AsyncTestClient(app=create_app(sealing_settings)) as client:
        yield client


async def raw_values(redis: Redis, prefix: str) -> list[bytes]:
    """Every value stored under ``prefix``, whatever the Redis type."""
    values: list[bytes] = []
    async for key in redis.scan_iter(match=Keys(prefix).pattern(), count=1000):
        kind = (await redis.type(key)).decode()
        if kind == "string":
            values.append(await redis.get(key))
        elif kind == "hash":
            values += [v for pair in (await redis.hgetall(key)).items() for v in pair]
        elif kind == "list":
            values += await redis.lrange(key, 0, -1)
        elif kind == "set":
            values += list(await redis.smembers(key))
        elif kind == "zset":
            values += await redis.zrange(key, 0, -1)
        values.append(key)
    return values


def clear_forms(secret: str) -> list[bytes]:
    """The ways a secret could sit in Redis in the clear: the text, its key text, its key bytes."""
    body = secret.removeprefix("whsec_")
    return [secret.encode(), body.encode(), base64.b64decode(body)]


async def test_no_webhook_secret_is_stored_in_the_clear_in_redis(
    sealing_api: AsyncTestClient[Any], redis: Redis, key_prefix: str
) -> None:
    given = generate_secret()
    created = await sealing_api.post(
        "/v1/watches",
        json={"task_id": TASK, "callback_url": "http://127.0.0.1:9/a", "secret": given},
        headers=auth(),
    )
    generated = await sealing_api.post(
        "/v1/watches",
        json={"task_id": TASK, "callback_url": "http://127.0.0.1:9/b"},
        headers=auth(),
    )
    assert (created.status_code, generated.status_code) == (201, 201)
    rotated = await sealing_api.post(
        f"/v1/watches/{generated.json()['id']}/rotate-secret", headers=auth()
    )
    assert rotated.status_code == 200
    secrets = [given, generated.json()["secret"], rotated.json()["secret"]]
    stored = await raw_values(redis, key_prefix)
    assert any(SEALED_PREFIX.encode() in value for value in stored)
    for secret in secrets:
        for form in clear_forms(secret):
            assert not any(form in value for value in stored)


async def settled(api: AsyncTestClient[Any], watch_id: str, within_s: float = 15.0) -> str:
    """The final state of a watch."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        state = (await api.get(f"/v1/watches/{watch_id}", headers=auth())).json()["state"]
        if state in ("delivered", "failed", "cancelled"):
            return str(state)
        await asyncio.sleep(0.05)
    raise AssertionError("the watch did not settle")


async def test_a_sealed_secret_signs_deliveries_that_verify_with_the_clear_secret(
    e2e_settings: Settings,
    redis: Redis,
    start_worker: Callable[..., Awaitable[Worker]],
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    settings = msgspec.structs.replace(e2e_settings, secrets_key=(KEY_NEW, KEY_OLD))
    await start_worker(settings)
    task = await simulator.create_task(entity_id=ENTITY)
    async with AsyncTestClient(app=create_app(settings)) as api:
        answer = await api.post(
            "/v1/watches",
            json={"task_id": task.id, "callback_url": receiver.url, "entity_id": ENTITY},
            headers=auth(),
        )
        assert await settled(api, answer.json()["id"]) == "delivered"
    [request] = await receiver.wait_for(1)
    verify_signature(answer.json()["secret"], request.headers, request.body)


def test_the_dev_stack_makes_its_key_once_owner_only_and_reuses_it(tmp_path: Path) -> None:
    key_file = tmp_path / ".ocr-relay" / "secrets.key"
    first = dev_secrets_key(key_file.parent)
    assert Settings.from_env({"SECRETS_KEY": first}).secrets_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert dev_secrets_key(key_file.parent) == first
