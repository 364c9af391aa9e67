"""Redis out of service (stopped, hung, read-only, full): the API answers 503 + Retry-After,
workers ride it out, nothing is lost.

Against private ``redis-server`` processes (append-only, like the compose file's) that the tests
stop, pause, start again, make replicas or fill; never the shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, ReadOnlyError

from service import metrics
from service.api.app import create_app
from service.cli.devstack import free_port
from service.settings import Settings
from service.simulator import SimulatorControl
from tests.conftest import Receiver, RedisProcess, auth, cli_env
from tests.test_end_to_end import ENTITY, register, settled

Client = AsyncTestClient[Any]
RESTART_MESSAGE = "redis out of service; restarting the worker"


@pytest.fixture
def own_redis(private_redis: Callable[..., RedisProcess]) -> RedisProcess:
    return private_redis()


@pytest.fixture
def outage_settings(e2e_settings: Settings, own_redis: RedisProcess) -> Settings:
    """The end-to-end settings on the private Redis, giving up on a command after 0.5 s."""
    return msgspec.structs.replace(e2e_settings, redis_url=own_redis.url, redis_timeout_s=0.5)


@pytest.fixture
async def outage_api(outage_settings: Settings) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(outage_settings)) as client:
        yield client


@pytest.fixture
def worker_restarted(caplog: pytest.LogCaptureFixture) -> Callable[[], Awaitable[None]]:
    """``await worker_restarted()`` returns once a worker has logged that it restarts."""
    caplog.set_level(logging.WARNING, logger="ocr_relay.worker")

    async def wait(within_s: float = 15.0) -> None:
        deadline = time.monotonic() + within_s
        while not any(RESTART_MESSAGE in record.getMessage() for record in caplog.records):
            if time.monotonic() > deadline:
                raise AssertionError(f"never logged {RESTART_MESSAGE!r}")
            await asyncio.sleep(0.05)

    return wait


def watch_payload(callback_url: str = "http://127.0.0.1:9/ocr") -> dict[str, str]:
    return {"task_id": "4f1d2c3b-0000-4000-8000-000000000001", "callback_url": callback_url}


async def test_registration_answers_503_problem_with_retry_after_while_redis_is_down(
    outage_api: Client, own_redis: RedisProcess
) -> None:
    own_redis.stop()
    answer = await outage_api.post("/v1/watches", json=watch_payload(), headers=auth())
    assert answer.status_code == 503
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.headers["retry-after"] == "5"
    assert answer.json()["title"] == "Unavailable"


async def test_503s_of_an_outage_are_counted_though_no_handler_ran(
    outage_api: Client, own_redis: RedisProcess
) -> None:
    # The rate limiter (middleware) meets the outage first: the app-level handler answers.
    labels = {"route": "/v1/watches", "method": "GET", "status": "503"}
    before = metrics.REGISTRY.get_sample_value("ocr_relay_api_requests_total", labels) or 0.0
    own_redis.stop()
    assert (await outage_api.get("/v1/watches", headers=auth())).status_code == 503
    after = metrics.REGISTRY.get_sample_value("ocr_relay_api_requests_total", labels)
    assert after == before + 1


async def test_a_hung_redis_gets_503_after_the_redis_timeout_instead_of_a_hung_request(
    outage_api: Client, own_redis: RedisProcess
) -> None:
    own_redis.pause()
    try:
        answer = await outage_api.get("/v1/watches/wat_0123456789abcdef", headers=auth())
    finally:
        own_redis.resume()
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"


# Redis servers that answer but refuse writes: how each one is started, and the 503's detail.
REFUSALS = {
    # A replica whose primary is gone: what a client sees mid-failover behind a fixed address.
    "read-only replica": (["--replicaof", "127.0.0.1", "1"], "storage is read-only"),
    "full": (["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"], "storage is full"),
}


@pytest.fixture(params=sorted(REFUSALS))
async def refusing(
    request: pytest.FixtureRequest, private_redis: Callable[..., RedisProcess]
) -> tuple[RedisProcess, str]:
    """A private Redis that refuses writes (read-only, or filled up), and the API's detail."""
    args, detail = REFUSALS[request.param]
    server = private_redis(appendonly=False, extra_args=args)
    async with Redis.from_url(server.url) as client:
        with contextlib.suppress(ReadOnlyError, OutOfMemoryError):  # the refusals to provoke
            for n in range(100):  # 10 MB at most: more than the 2 MB one holds
                await client.set(f"ballast-{n}", b"x" * 100_000)
    return server, detail


async def test_a_redis_that_refuses_writes_gets_503_naming_why(
    refusing: tuple[RedisProcess, str], e2e_settings: Settings
) -> None:
    server, detail = refusing
    settings = msgspec.structs.replace(e2e_settings, redis_url=server.url)
    async with AsyncTestClient(app=create_app(settings)) as api:
        answer = await api.post("/v1/watches", json=watch_payload(), headers=auth())
    assert answer.status_code == 503
    assert detail in answer.json()["detail"]
    assert answer.headers["retry-after"] == "5"


async def test_a_worker_on_a_redis_that_refuses_writes_waits_instead_of_dying(
    refusing: tuple[RedisProcess, str],
    e2e_settings: Settings,
    serving: Callable[..., asyncio.Task[None]],
    worker_restarted: Callable[[], Awaitable[None]],
) -> None:
    server, _ = refusing
    worker = serving(msgspec.structs.replace(e2e_settings, redis_url=server.url))
    await worker_restarted()
    assert not worker.done()


async def test_the_api_serves_again_as_soon_as_redis_is_back(
    outage_api: Client, own_redis: RedisProcess
) -> None:
    assert (await outage_api.get("/v1/watches", headers=auth())).status_code == 200
    own_redis.stop()
    assert (await outage_api.get("/v1/watches", headers=auth())).status_code == 503
    own_redis.start()
    answer = await outage_api.post("/v1/watches", json=watch_payload(), headers=auth())
    assert answer.status_code == 201, answer.text


async def test_a_worker_rides_out_a_redis_restart_and_delivers_the_watch_it_was_polling(
    outage_api: Client,
    outage_settings: Settings,
    serving: Callable[..., asyncio.Task[None]],
    own_redis: RedisProcess,
    simulator: SimulatorControl,
    receiver: Receiver,
    worker_restarted: Callable[[], Awaitable[None]],
) -> None:
    worker = serving(outage_settings)
    task = await simulator.create_task(entity_id=ENTITY, duration_s=2.0)
    watch = await register(outage_api, task.id, receiver.url)
    own_redis.stop()
    await worker_restarted()
    own_redis.start()
    done = await settled(outage_api, watch["id"], within_s=60)
    assert done["state"] == "delivered"
    [request] = await receiver.wait_for(1)
    assert msgspec.json.decode(request.body)["data"]["watch_id"] == watch["id"]
    assert not worker.done()


async def test_a_worker_started_before_redis_waits_for_it_and_then_works(
    outage_api: Client,
    outage_settings: Settings,
    serving: Callable[..., asyncio.Task[None]],
    own_redis: RedisProcess,
    simulator: SimulatorControl,
    receiver: Receiver,
    worker_restarted: Callable[[], Awaitable[None]],
) -> None:
    task = await simulator.create_task(entity_id=ENTITY)
    watch = await register(outage_api, task.id, receiver.url)
    own_redis.stop()
    restarts = _restarts()
    serving(outage_settings)
    await worker_restarted()
    own_redis.start()
    assert (await settled(outage_api, watch["id"], within_s=30))["state"] == "delivered"
    assert _restarts() > restarts


def test_a_stop_signal_ends_a_worker_process_that_waits_for_redis() -> None:
    with WorkerProcess(f"redis://127.0.0.1:{free_port()}/0") as worker:
        worker.read_until(RESTART_MESSAGE)
        worker.process.send_signal(signal.SIGTERM)
        output = worker.finish()
    assert worker.process.returncode == 0, output
    assert "worker stopped" in output
    assert "Traceback" not in output


def test_a_worker_process_serving_metrics_lives_through_a_redis_restart(
    own_redis: RedisProcess,
) -> None:
    port = free_port()
    with WorkerProcess(own_redis.url, WORKER_METRICS_PORT=str(port)) as worker:
        worker.read_until("worker ready")
        own_redis.stop()
        worker.read_until(RESTART_MESSAGE)
        own_redis.start()
        worker.read_until("worker ready")  # the metrics port is not bound a second time
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        worker.process.send_signal(signal.SIGTERM)
        output = worker.finish()
    assert "ocr_relay_worker_restarts_total 1.0" in scraped
    assert worker.process.returncode == 0, output


class WorkerProcess:
    """``ocr-relay worker`` as a child process with its output read line by line."""

    def __init__(self, redis_url: str, **env: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker"],
            env=cli_env(REDIS_URL=redis_url, REDIS_TIMEOUT_S="0.5", **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []

    def read_until(self, text: str) -> None:
        """Read output until a line holds ``text``; fail if the process ends first."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if text in line:
                return
        raise AssertionError(f"the worker ended before saying {text!r}: {''.join(self.output)}")

    def finish(self, within_s: float = 15.0) -> str:
        """Wait for the process to end; all it printed."""
        rest, _ = self.process.communicate(timeout=within_s)
        return "".join(self.output) + rest

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait()


def _restarts() -> float:
    return metrics.REGISTRY.get_sample_value("ocr_relay_worker_restarts_total") or 0.0
