"""Crashes for real: worker processes killed with SIGKILL at a step boundary and at random, the
job queue flushed, Monite failing and hanging — and still every watch ends terminal, and every
event reaches its receiver under one ``webhook-id``.

SIGKILL is the fault no ``try``/``finally`` sees: the lease a killed round or attempt holds stays
until it runs out, the job it was running stays in arq's keys, nothing is enqueued after it. The
time indexes and the reconciler must carry every watch on.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.api.app import create_app
from service.clock import wall_ms
from service.domain.watch import Watch
from service.settings import Settings
from service.simulator import SimulatorControl
from service.storage import Store
from tests.conftest import Receiver, auth
from tests.test_end_to_end import ENTITY, register, settled

Client = AsyncTestClient[Any]
Spawn = Callable[..., subprocess.Popen[bytes]]
TERMINAL = ("delivered", "failed", "cancelled")


# A worker process whose first call of one ``Queue`` method (the enqueue that follows a state
# write) kills it with SIGKILL instead, as a power cut or the OOM killer would: no ``finally``
# runs, no connection is closed. Production code carries no hook for this: the method is replaced.
CRASHING_WORKER = """
import os, signal, sys
from service.cli import main
from service.queue import Queue

async def die(*_, **__):
    os.kill(os.getpid(), signal.SIGKILL)

setattr(Queue, sys.argv[1], die)
sys.exit(main(["worker"]))
"""


async def exited(process: subprocess.Popen[bytes], within_s: float = 20.0) -> int:
    """The process's return code once it has ended."""
    return await asyncio.wait_for(asyncio.to_thread(process.wait), within_s)


@pytest.mark.parametrize(
    ("method", "answers"),
    [
        pytest.param("deliver_now", [], id="after-a-round-finished-the-watch"),
        pytest.param("schedule_delivery", [503], id="after-an-attempt-asked-for-a-retry"),
    ],
)
async def test_a_worker_killed_between_a_write_and_its_enqueue_strands_nothing(
    method: str,
    answers: list[int],
    spawn_worker: Spawn,
    start_worker: Callable[..., Any],
    e2e_api: Client,
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    receiver.script(answers)
    task = await simulator.create_task(entity_id=ENTITY)
    watch = await register(e2e_api, task.id, receiver.url)
    assert await exited(spawn_worker(None, "-c", CRASHING_WORKER, method)) == -9
    assert (await e2e_api.get(f"/v1/watches/{watch['id']}", headers=auth())).json()[
        "state"
    ] == "delivering"
    await start_worker()
    done = await settled(e2e_api, watch["id"], within_s=30)
    assert done["state"] == "delivered"
    assert [r.headers["webhook-id"] for r in receiver.requests] == [done["event_id"]] * (
        1 + len(answers)
    )


async def flush_queue(store: Store) -> int:
    """Delete arq's queue and every job key of this prefix, as a lost or flushed Redis would."""
    keys = [store.keys.queue()]
    keys += [k async for k in store.redis.scan_iter(match=f"arq:*{store.keys.prefix}*")]
    return int(await store.redis.delete(*keys))


async def diagnose(store: Store, watch: Watch) -> str:
    """Where an unfinished watch waits, for the failure message."""
    group = watch.entity_id or "-"
    due = await store.redis.zscore(store.keys.due(group), watch.id)
    delivery = await store.redis.zscore(store.keys.deliveries(), watch.id)
    locked = await store.redis.pttl(store.keys.round_lock(group))
    queued = await store.redis.zcard(store.keys.queue())
    return (
        f"{watch.state.value}, polls {watch.polls}, errors {watch.poll_errors}, last "
        f"{watch.last_monite_status}, due {due} / delivery {delivery} (now {wall_ms()}), "
        f"round lock pttl {locked}, {queued} jobs queued, attempts {watch.delivery_attempts}"
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_chaos_soak_loses_no_watch(
    e2e_settings: Settings,
    spawn_worker: Spawn,
    store: Store,
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    settings = msgspec.structs.replace(
        e2e_settings, monite_timeout_s=2.0, api_rate_limit_per_minute=1_000_000
    )
    await simulator.chaos(error_rate=0.2, hang_rate=0.01, hang_s=4.0)
    entities = [str(uuid.uuid4()) for _ in range(5)]
    tasks = [
        (task_id, entity)
        for entity in entities
        for duration in (0.0, 3.0)
        for task_id in await simulator.create_tasks(100, entity_id=entity, duration_s=duration)
    ]
    started = time.monotonic()
    async with AsyncTestClient(app=create_app(settings)) as api:
        watches: list[dict[str, Any]] = []
        for first in range(0, len(tasks), 50):
            watches += await asyncio.gather(
                *(
                    register(api, task_id, receiver.url, entity_id=entity)
                    for task_id, entity in tasks[first : first + 50]
                )
            )
        for kill in range(20):
            worker = spawn_worker(settings)
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            worker.kill()
            await exited(worker)
            if kill == 10:
                assert await flush_queue(store) > 0
        spawn_worker(settings)
        deadline = time.monotonic() + 150
        while True:
            counts = await store.retention.state_counts()
            unfinished = counts.get("current:polling", 0) + counts.get("current:delivering", 0)
            if unfinished == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        elapsed = time.monotonic() - started
    stored = await store.watches.get_many([w["id"] for w in watches])
    states = {w.id: w.state.value for w in stored if w is not None}
    by_watch: dict[str, set[str]] = defaultdict(set)
    for request in receiver.requests:
        body = msgspec.json.decode(request.body)
        by_watch[body["data"]["watch_id"]].add(request.headers["webhook-id"])
    duplicates = len(receiver.requests) - len(by_watch)
    print(
        f"chaos soak (seed {seed}): {len(watches)} watches, 20 SIGKILLs, queue flushed once, "
        f"{elapsed:.1f} s to drain, {len(receiver.requests)} deliveries, {duplicates} repeats, "
        f"reconciled {counts.get('reconciled:poll', 0)} rounds / "
        f"{counts.get('reconciled:delivery', 0)} deliveries"
    )
    stuck = [w for w in stored if w is not None and w.state.value not in TERMINAL]
    assert stuck == [], (
        f"seed {seed}: {len(stuck)} unfinished, e.g. {await diagnose(store, stuck[0])}"
    )
    assert len(states) == len(watches)
    assert set(by_watch) == set(states), f"seed {seed}: a watch got no event"
    assert all(len(ids) == 1 for ids in by_watch.values()), f"seed {seed}: two webhook-ids"
