"""A delivery attempt that cannot even be made is logged and retried; the watch never strands."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from service.api.app import create_app
from service.clock import now_utc
from service.domain.signing import verify_signature
from service.domain.watch import Watch, WatchState
from service.ids import new_id
from service.queue import Queue, connect
from service.settings import Settings
from service.simulator import SimulatorControl
from service.storage import Store
from service.storage.events import EventRecord
from tests.conftest import Receiver, auth
from tests.test_end_to_end import ENTITY, register, settled


async def test_a_secret_no_configured_key_opens_ends_the_series_with_a_clear_reason(
    e2e_settings: Settings, start_worker: Any, simulator: SimulatorControl, receiver: Receiver
) -> None:
    sealing = msgspec.structs.replace(e2e_settings, secrets_key=(os.urandom(32),))
    other_key = msgspec.structs.replace(e2e_settings, secrets_key=(os.urandom(32),))
    await start_worker(other_key)
    task = await simulator.create_task(entity_id=ENTITY)
    async with AsyncTestClient(app=create_app(sealing)) as api:
        watch = await register(api, task.id, receiver.url)
        done = await settled(api, watch["id"])
        log = (await api.get(f"/v1/watches/{watch['id']}/deliveries", headers=auth())).json()
    assert done["state"] == "failed"
    assert done["failure"]["code"] == "delivery_exhausted"
    assert {a["outcome"] for a in log["items"]} == {"retry"}
    assert all("cannot be unsealed" in a["error"] for a in log["items"])
    assert len(log["items"]) == len(e2e_settings.delivery_schedule_s)
    assert receiver.requests == []


async def test_a_repeated_batch_finding_a_live_lease_delivers_once_after_it_ends(
    e2e_api: Any,
    e2e_settings: Settings,
    start_worker: Any,
    simulator: SimulatorControl,
    receiver: Receiver,
    store: Store,
) -> None:
    # As if a worker died mid-attempt: the watch is delivering, its lease runs 2 s more.
    task = await simulator.create_task(entity_id=ENTITY, outcome="never")
    watch = await register(e2e_api, task.id, receiver.url)
    event = EventRecord(
        id=new_id("evt"), watch_id=watch["id"], type="ocr.failed", body=b"{}", created_at=now_utc()
    )
    lease_ends = now_utc() + timedelta(seconds=2)

    def crashed_mid_attempt(w: Watch) -> Watch:
        w.state, w.event_id, w.event_type = WatchState.DELIVERING, event.id, event.type
        w.delivery_series, w.delivery_in_flight_until = 1, lease_ends
        return w

    await store.watches.update(watch["id"], crashed_mid_attempt, event=event)
    queue = Queue(connect(e2e_settings), store.keys)
    await queue.deliver_now([watch["id"]])  # the repeat of the crashed batch job
    await start_worker()

    [request] = await receiver.wait_for(1)
    assert now_utc() >= lease_ends
    assert request.headers["webhook-id"] == event.id
    assert (await settled(e2e_api, watch["id"]))["state"] == "delivered"
    await queue.redis.aclose(close_connection_pool=True)


async def test_rotating_secrets_key_keeps_every_event_deliverable(
    e2e_settings: Settings, start_worker: Any, simulator: SimulatorControl, receiver: Receiver
) -> None:
    old, new = os.urandom(32), os.urandom(32)
    before = msgspec.structs.replace(e2e_settings, secrets_key=(old,))
    after = msgspec.structs.replace(e2e_settings, secrets_key=(new, old))
    task = await simulator.create_task(entity_id=ENTITY, outcome="never")
    async with AsyncTestClient(app=create_app(before)) as api:
        sealed_with_old = await register(api, task.id, receiver.url)
    await simulator.complete(task.id)
    # Every process restarted with SECRETS_KEY=new,old: the old key still opens what it sealed.
    await start_worker(after)
    async with AsyncTestClient(app=create_app(after)) as api:
        done = await settled(api, sealed_with_old["id"])
    assert done["state"] == "delivered"
    [request] = await receiver.wait_for(1)
    verify_signature(sealed_with_old["secret"], request.headers, request.body)


async def test_an_event_whose_key_was_removed_early_is_delivered_once_the_key_is_back(
    e2e_settings: Settings,
    run_burst: Any,
    start_worker: Any,
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    key = os.urandom(32)
    with_key = msgspec.structs.replace(e2e_settings, secrets_key=(key,))
    without = msgspec.structs.replace(e2e_settings, secrets_key=(os.urandom(32),))
    task = await simulator.create_task(entity_id=ENTITY)
    async with AsyncTestClient(app=create_app(with_key)) as api:
        watch = await register(api, task.id, receiver.url)
        await run_burst(without)  # workers that lost the key: every attempt fails
        exhausted = await settled(api, watch["id"])
        assert exhausted["failure"]["code"] == "delivery_exhausted"
        # The operator puts the key back (workers restarted with it) and redelivers: same event.
        await start_worker(with_key)
        again = await api.post(f"/v1/watches/{watch['id']}/redeliver", headers=auth())
        assert again.status_code == 202, again.text
        done = await settled(api, watch["id"])
    assert done["state"] == "delivered"
    [request] = await receiver.wait_for(1)
    assert request.headers["webhook-id"] == exhausted["event_id"]
    verify_signature(watch["secret"], request.headers, request.body)
