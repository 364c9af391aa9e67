"""A worker told to stop (SIGTERM: deploy, scale-in) takes no new job and lets running ones end."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from arq.worker import Worker
from litestar.testing import AsyncTestClient

from service.settings import Settings
from service.simulator import SimulatorControl
from tests.conftest import Receiver, Reply, auth
from tests.test_end_to_end import ENTITY, register, settled
from workers.runner import serve_until_signalled

Client = AsyncTestClient[Any]


class Served:
    """One worker run by ``serve``, and the event that tells it to stop."""

    def __init__(self, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
        self.stop = stop
        self.task = task

    async def stopped(self, within_s: float) -> None:
        """Tell the worker to stop; return once ``serve`` has returned."""
        self.stop.set()
        async with asyncio.timeout(within_s):
            await self.task


@pytest.fixture
def stoppable(
    e2e_settings: Settings, serving: Callable[..., asyncio.Task[None]]
) -> Callable[..., Served]:
    """``stoppable(drain_s=…)`` starts a worker run by ``serve`` that the test may stop."""

    def start(drain_s: float = 10.0) -> Served:
        stop = asyncio.Event()
        return Served(stop, serving(e2e_settings, stop=stop, drain_s=drain_s))

    return start


async def test_a_stopped_worker_finishes_the_delivery_it_is_making(
    e2e_api: Client,
    stoppable: Callable[..., Served],
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    receiver.default = Reply(delay_s=1.0)
    served = stoppable()
    task = await simulator.create_task(entity_id=ENTITY)
    watch = await register(e2e_api, task.id, receiver.url)
    await receiver.wait_for(1)  # the attempt is in flight: its reply comes in a second
    await served.stopped(within_s=10)
    done = (await e2e_api.get(f"/v1/watches/{watch['id']}", headers=auth())).json()
    assert done["state"] == "delivered"
    log = (await e2e_api.get(f"/v1/watches/{watch['id']}/deliveries", headers=auth())).json()
    assert [attempt["outcome"] for attempt in log["items"]] == ["delivered"]


async def test_a_stopping_worker_takes_no_new_job_and_another_worker_does(
    e2e_api: Client,
    stoppable: Callable[..., Served],
    start_worker: Callable[..., Awaitable[Worker]],
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    receiver.script([Reply(delay_s=1.5)])
    served = stoppable()
    first = await register(
        e2e_api, (await simulator.create_task(entity_id=ENTITY)).id, receiver.url
    )
    await receiver.wait_for(1)
    served.stop.set()  # draining: the first attempt is still in flight
    second = await register(
        e2e_api, (await simulator.create_task(entity_id=ENTITY)).id, receiver.url
    )
    await served.stopped(within_s=10)
    assert len(receiver.requests) == 1
    assert (await settled(e2e_api, first["id"]))["state"] == "delivered"
    await start_worker()
    assert (await settled(e2e_api, second["id"]))["state"] == "delivered"


async def test_a_job_still_running_when_the_drain_time_is_up_is_cancelled(
    e2e_api: Client,
    stoppable: Callable[..., Served],
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    receiver.default = Reply(delay_s=5.0)
    served = stoppable(drain_s=0.3)
    task = await simulator.create_task(entity_id=ENTITY)
    watch = await register(e2e_api, task.id, receiver.url)
    await receiver.wait_for(1)
    await served.stopped(within_s=3)
    still = (await e2e_api.get(f"/v1/watches/{watch['id']}", headers=auth())).json()
    assert still["state"] == "delivering"


async def test_sigterm_drains_the_worker_and_a_second_sigterm_stops_it_at_once(
    e2e_api: Client,
    e2e_settings: Settings,
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    receiver.default = Reply(delay_s=30.0)
    worker = asyncio.create_task(serve_until_signalled(e2e_settings))
    task = await simulator.create_task(entity_id=ENTITY)
    await register(e2e_api, task.id, receiver.url)
    await receiver.wait_for(1)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.5)
    assert not worker.done()  # draining: the attempt has 30 s to go
    os.kill(os.getpid(), signal.SIGTERM)
    async with asyncio.timeout(5):
        await worker
