"""Poll rounds against a Monite that misbehaves: nothing it sends can raise out of a round, and
answers are applied as they come, so one bad id never holds its batch-mates back."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from arq.worker import Worker
from litestar.testing import AsyncTestClient

from service.simulator import SimulatorControl
from tests.conftest import Receiver, auth
from tests.test_end_to_end import ENTITY, register, settled

Client = AsyncTestClient[Any]


async def test_a_task_whose_timestamps_have_no_offset_is_delivered(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    await simulator.chaos(naive_timestamp_rate=1.0)
    task = await simulator.create_task(entity_id=ENTITY)
    watch = await register(e2e_api, task.id, receiver.url)
    done = await settled(e2e_api, watch["id"])
    assert done["state"] == "delivered"
    [request] = await receiver.wait_for(1)
    assert b'"recognized_at":' in request.body


async def test_many_unknown_ids_neither_livelock_the_round_nor_delay_a_finished_task(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    finished = await simulator.create_task(entity_id=ENTITY)
    unknown = [str(uuid.uuid4()) for _ in range(99)]
    watches = [await register(e2e_api, task_id, receiver.url) for task_id in unknown]
    found = await register(e2e_api, finished.id, receiver.url)
    assert (await settled(e2e_api, found["id"], within_s=5))["state"] == "delivered"
    for watch in watches:
        done = await settled(e2e_api, watch["id"], within_s=30)
        assert (done["state"], done["failure"]["code"]) == ("failed", "task_not_found")


async def test_slow_lookups_of_ids_a_list_left_out_do_not_hold_back_the_listed_ones(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    left_out = [await simulator.create_task(entity_id=ENTITY) for _ in range(3)]
    listed = await simulator.create_task(entity_id=ENTITY)
    await simulator.chaos(list_omit_ids=[t.id for t in left_out], get_latency_s=12.0)
    slow = [await register(e2e_api, t.id, receiver.url) for t in left_out]
    quick = await register(e2e_api, listed.id, receiver.url)
    started = time.monotonic()
    assert (await settled(e2e_api, quick["id"], within_s=8))["state"] == "delivered"
    assert time.monotonic() - started < 8
    # Once Monite answers per id again, the left-out tasks are found too.
    await simulator.chaos(get_latency_s=0.0)
    for watch in slow:
        assert (await settled(e2e_api, watch["id"], within_s=30))["state"] == "delivered"


async def test_a_round_answers_the_ids_it_could_not_look_up_later_not_never(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    tasks = [await simulator.create_task(entity_id=ENTITY) for _ in range(12)]
    await simulator.chaos(list_omit_ids=[t.id for t in tasks])
    watches = await asyncio.gather(*(register(e2e_api, t.id, receiver.url) for t in tasks))
    for watch in watches:
        assert (await settled(e2e_api, watch["id"], within_s=20))["state"] == "delivered"
    log = (await e2e_api.get(f"/v1/watches/{watches[0]['id']}", headers=auth())).json()
    assert log["polls"] >= 1


async def test_a_failure_the_simulator_made_up_says_so_in_the_event(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    task = await simulator.create_task(entity_id=ENTITY, outcome="error")
    watch = await register(e2e_api, task.id, receiver.url)
    done = await settled(e2e_api, watch["id"])
    assert done["failure"]["code"] == "ocr_error"
    assert "simulated by the ocr-relay Monite simulator" in done["failure"]["message"]
    [request] = await receiver.wait_for(1)
    assert b"simulated by the ocr-relay Monite simulator" in request.body
