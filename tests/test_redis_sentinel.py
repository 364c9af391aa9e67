"""``REDIS_URL=redis+sentinel://…``: the service finds its Redis primary through Sentinel, also
after a failover. A private primary, replica and sentinel run for each test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import pytest
import redis
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from service.api.app import create_app
from service.cli.devstack import redis_reachable
from service.polling import LEASE_MS
from service.sentinel_url import SentinelUrl, parse_sentinel_url
from service.settings import Settings
from service.simulator import SimulatorControl
from tests.conftest import Receiver, RedisProcess, auth
from tests.test_end_to_end import ENTITY, register, settled

Client = AsyncTestClient[Any]
SERVICE = "relay-primary"
SENTINEL_PASSWORD = "sentinel-s3cret"
WATCH = {"task_id": "4f1d2c3b-0000-4000-8000-000000000001", "callback_url": "http://127.0.0.1:9/"}


class SentinelStack(msgspec.Struct):
    primary: RedisProcess
    replica: RedisProcess
    sentinel: RedisProcess

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{SERVICE}/0"

    async def primary_port(self) -> int:
        """The port of the primary the sentinel names now."""
        async with Redis(port=self.sentinel.port) as sentinel:
            _, port = await sentinel.sentinel_get_master_addr_by_name(SERVICE)
        return int(port)


@pytest.fixture
def stack(private_redis: Callable[..., RedisProcess]) -> SentinelStack:
    primary = private_redis(extra_args=["--repl-diskless-sync-delay", "0"])  # sync at once
    replica = private_redis(extra_args=["--replicaof", "127.0.0.1", str(primary.port)])
    sentinel = private_redis(
        appendonly=False,
        extra_args=["--sentinel"],
        config=(
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 300\n"
            f"sentinel failover-timeout {SERVICE} 2000\n"
        ),
    )
    _wait_until_in_sync(replica)
    return SentinelStack(primary, replica, sentinel)


def _wait_until_in_sync(replica: RedisProcess, within_s: float = 10.0) -> None:
    client = redis.Redis(port=replica.port)
    deadline = time.monotonic() + within_s
    try:
        while client.info("replication")["master_link_status"] != "up":
            assert time.monotonic() < deadline, "the replica never synced"
            time.sleep(0.05)
    finally:
        client.close()


@pytest.fixture
def sentinel_settings(e2e_settings: Settings, stack: SentinelStack) -> Settings:
    return msgspec.structs.replace(e2e_settings, redis_url=stack.url, redis_timeout_s=0.5)


@pytest.fixture
async def sentinel_api(sentinel_settings: Settings) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(sentinel_settings)) as client:
        yield client


def test_a_sentinel_url_names_the_sentinels_the_service_the_database_and_the_password() -> None:
    assert parse_sentinel_url("redis+sentinel://:pw%40x@s1,10.0.0.2:26380,[::1]:1/main/3") == (
        SentinelUrl(
            sentinels=(("s1", 26379), ("10.0.0.2", 26380), ("::1", 1)),
            service_name="main",
            db=3,
            password="pw@x",
        )
    )
    assert parse_sentinel_url("redis://cache:6379/0") is None


def test_a_sentinel_url_may_carry_the_sentinels_own_password() -> None:
    parsed = parse_sentinel_url("redis+sentinel://s1/main?sentinel_password=s%26p")
    assert parsed is not None
    assert (parsed.password, parsed.sentinel_password) == (None, "s&p")


def test_the_passwords_of_a_sentinel_url_are_not_in_its_repr() -> None:
    parsed = parse_sentinel_url("redis+sentinel://:s3cret-pw@s1/main?sentinel_password=s3cret-sp")
    assert "s3cret" not in repr(parsed)


async def test_sentinels_that_require_a_password_are_asked_with_it(
    private_redis: Callable[..., RedisProcess], e2e_settings: Settings, stack: SentinelStack
) -> None:
    guarded = private_redis(
        appendonly=False,
        extra_args=["--sentinel"],
        config=(
            f"sentinel monitor {SERVICE} 127.0.0.1 {stack.primary.port} 1\n"
            f"requirepass {SENTINEL_PASSWORD}\n"
        ),
    )
    url = f"redis+sentinel://127.0.0.1:{guarded.port}/{SERVICE}/0"
    assert not redis_reachable(url)
    assert redis_reachable(f"{url}?sentinel_password={SENTINEL_PASSWORD}")
    settings = msgspec.structs.replace(
        e2e_settings, redis_url=f"{url}?sentinel_password={SENTINEL_PASSWORD}"
    )
    async with AsyncTestClient(app=create_app(settings)) as api:
        answer = await api.post("/v1/watches", json=WATCH, headers=auth())
    assert answer.status_code == 201, answer.text


def test_dev_sees_the_primary_through_sentinel(stack: SentinelStack) -> None:
    assert redis_reachable(stack.url)
    assert not redis_reachable(stack.url.replace(SERVICE, "unknown-service"))


async def test_api_and_worker_keep_their_state_on_the_primary_sentinel_names(
    sentinel_api: Client,
    sentinel_settings: Settings,
    serving: Callable[..., asyncio.Task[None]],
    stack: SentinelStack,
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    serving(sentinel_settings)
    task = await simulator.create_task(entity_id=ENTITY)
    watch = await register(sentinel_api, task.id, receiver.url)
    assert (await settled(sentinel_api, watch["id"]))["state"] == "delivered"
    async with Redis(port=stack.primary.port) as primary:
        assert await primary.keys(f"{sentinel_settings.key_prefix}*")


async def test_after_a_failover_the_service_goes_on_with_the_promoted_replica(
    sentinel_api: Client,
    sentinel_settings: Settings,
    serving: Callable[..., asyncio.Task[None]],
    stack: SentinelStack,
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    worker = serving(sentinel_settings)
    # A client sends again after a 503 before the failover too: with a 0.5 s Redis timeout, the
    # first connection through the sentinel can miss it on a loaded host (one CI run in five).
    first = await simulator.create_task(entity_id=ENTITY)
    payload = {"task_id": first.id, "callback_url": receiver.url, "entity_id": ENTITY}
    answer = await _through_failover(sentinel_api, "POST", "/v1/watches", payload)
    assert answer.status_code == 201, answer.text
    before = answer.json()
    assert (await _settled_through_failover(sentinel_api, before["id"]))["state"] == "delivered"
    await _replicated(stack)
    stack.primary.kill()
    await _promoted(stack)

    task = await simulator.create_task(entity_id=ENTITY)
    payload = {"task_id": task.id, "callback_url": receiver.url, "entity_id": ENTITY}
    registered = await _through_failover(sentinel_api, "POST", "/v1/watches", payload)
    assert registered.status_code == 201, registered.text
    after = registered.json()
    # A poll round the failover cut short (MasterNotFoundError while the sentinel settles) keeps
    # its watches leased until the lease runs out; then the reconciler hands them on.
    recovery_s = LEASE_MS / 1000 + 15
    settled_after = await _settled_through_failover(sentinel_api, after["id"], recovery_s)
    assert settled_after["state"] == "delivered"
    kept = await _through_failover(sentinel_api, "GET", f"/v1/watches/{before['id']}")
    assert kept.status_code == 200, kept.text
    assert kept.json()["state"] == "delivered"
    assert not worker.done()


async def _promoted(stack: SentinelStack, within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    while await stack.primary_port() != stack.replica.port:
        assert time.monotonic() < deadline, "sentinel never promoted the replica"
        await asyncio.sleep(0.1)


async def _replicated(stack: SentinelStack, within_s: float = 10.0) -> None:
    """Wait until the replica has applied every write the primary has made so far.

    (``WAIT`` cannot tell: it counts only the writes of the connection that sends it.)
    """
    async with Redis(port=stack.primary.port) as primary, Redis(port=stack.replica.port) as rep:
        target = (await primary.info("replication"))["master_repl_offset"]
        deadline = time.monotonic() + within_s
        while (await rep.info("replication"))["slave_repl_offset"] < target:
            assert time.monotonic() < deadline, "the replica never caught up"
            await asyncio.sleep(0.02)


async def _through_failover(
    api: Client, method: str, path: str, payload: Any = None, within_s: float = 15.0
) -> httpx.Response:
    """The answer a client gets that sends again after each 503 (the service's "retry shortly"
    while the connection to the promoted replica is rebuilt), for at most ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        answer = await api.request(method, path, json=payload, headers=auth())
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer
        assert answer.headers["retry-after"]
        await asyncio.sleep(0.2)


async def _settled_through_failover(
    api: Client, watch_id: str, within_s: float = 30.0
) -> dict[str, Any]:
    """The watch once delivered, failed or cancelled, read as ``_through_failover`` reads."""
    deadline = time.monotonic() + within_s
    while True:
        answer = await _through_failover(api, "GET", f"/v1/watches/{watch_id}")
        assert answer.status_code == 200, answer.text
        watch: dict[str, Any] = answer.json()
        if watch["state"] in ("delivered", "failed", "cancelled"):
            return watch
        assert time.monotonic() < deadline, f"watch still {watch['state']}: {watch}"
        await asyncio.sleep(0.05)
