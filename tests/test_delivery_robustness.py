"""A delivery attempt that cannot even be made is logged and retried; the watch never strands."""

from __future__ import annotations

import os
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from service.api.app import create_app
from service.settings import Settings
from service.simulator import SimulatorControl
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
