"""Nothing stranded: whatever happens between a state write and the job that should take the next
step, the watch still ends terminal, with one ``webhook-id`` per event.

Faults are injected at each such boundary — the enqueue that follows a write in a poll round, a
delivery attempt's retry, a redelivery, a registration and the push intake — as an exception and
as a cancellation (and, in ``test_chaos.py``, as SIGKILL of a worker process). Replacing the one
enqueue call is the only way to make a fault land at exactly that line; everything else is real:
Redis, the simulator, the receiver, arq workers. The reconciler (here without slack) then finds the
overdue step in its index.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.queue import Queue
from service.reconcile import Reconciler
from service.settings import Settings
from service.simulator import SimulatorControl
from service.storage import Store
from tests.conftest import Receiver, auth
from tests.test_end_to_end import ENTITY, register, settled
from tests.test_push import first_poll_done, push_api, push_body, push_settings, signed

Client = AsyncTestClient[Any]
Burst = Callable[[], Awaitable[int]]
__all__ = ["push_api", "push_settings"]  # fixtures used here


@pytest.fixture
def fail_once(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, BaseException], list[str]]:
    """``fail_once("deliver_now", fault)``: the next call of that ``Queue`` method raises
    ``fault`` instead of enqueueing; later calls enqueue. Returns the list of faults raised."""

    def inject(method: str, fault: BaseException) -> list[str]:
        original = getattr(Queue, method)
        raised: list[str] = []

        async def failing(self: Queue, *args: Any, **kwargs: Any) -> Any:
            if not raised:
                raised.append(method)
                raise fault
            return await original(self, *args, **kwargs)

        monkeypatch.setattr(Queue, method, failing)
        return raised

    return inject


async def state_of(api: Client, watch_id: str) -> str:
    state: str = (await api.get(f"/v1/watches/{watch_id}", headers=auth())).json()["state"]
    return state


async def rescued(reconciler: Reconciler, run_burst: Burst, store: Store, step: str) -> None:
    """The reconciler sends the overdue step on, and a worker takes it."""
    await asyncio.sleep(0.2)  # a retry is due 0.1 s after its attempt (``service_settings``)
    report = await reconciler.run()
    assert (report.rounds if step == "poll" else report.deliveries) >= 1
    assert int((await store.retention.state_counts())[f"reconciled:{step}"]) >= 1
    await run_burst()


async def run_out(api: Client, watch_id: str, run_burst: Burst, reconciler: Reconciler) -> str:
    """Workers and the reconciler take turns until the watch is terminal; its final state."""
    for _ in range(3):
        await run_burst()
        state = await state_of(api, watch_id)
        if state in ("delivered", "failed", "cancelled"):
            return state
        await reconciler.run()
    return await state_of(api, watch_id)


@pytest.mark.parametrize(
    ("method", "answers", "fault"),
    [
        pytest.param("deliver_now", [], RuntimeError("injected"), id="round-hands-over-exception"),
        pytest.param(
            "deliver_now", [], asyncio.CancelledError(), id="round-hands-over-cancellation"
        ),
        pytest.param(
            "schedule_delivery", [503], RuntimeError("injected"), id="retry-scheduled-exception"
        ),
    ],
)
async def test_a_delivery_step_whose_job_was_lost_is_found_by_the_reconciler(
    method: str,
    answers: list[int],
    fault: BaseException,
    fail_once: Callable[[str, BaseException], list[str]],
    e2e_api: Client,
    run_burst: Burst,
    reconciler: Reconciler,
    store: Store,
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    receiver.script(answers)
    raised = fail_once(method, fault)
    task = await simulator.create_task(entity_id=ENTITY)
    watch = await register(e2e_api, task.id, receiver.url)
    await run_burst()
    assert raised
    assert await state_of(e2e_api, watch["id"]) == "delivering"
    assert len(receiver.requests) == len(answers)
    await rescued(reconciler, run_burst, store, "delivery")
    done = await settled(e2e_api, watch["id"])
    assert done["state"] == "delivered"
    assert [r.headers["webhook-id"] for r in receiver.requests] == [done["event_id"]] * (
        1 + len(answers)
    )


@pytest.mark.parametrize(
    ("method", "answers"),
    [
        pytest.param("deliver_now", [], id="round-hands-to-delivery"),
        pytest.param("schedule_delivery", [503], id="attempt-schedules-retry"),
        pytest.param("schedule_round", [], id="registration-schedules-round"),
    ],
)
async def test_a_cancelled_enqueue_at_any_step_still_ends_terminal_with_one_webhook_id(
    method: str,
    answers: list[int],
    fail_once: Callable[[str, BaseException], list[str]],
    e2e_api: Client,
    run_burst: Burst,
    reconciler: Reconciler,
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    receiver.script(answers)
    task = await simulator.create_task(entity_id=ENTITY)
    raised = fail_once(method, asyncio.CancelledError())
    payload = {"task_id": task.id, "callback_url": receiver.url, "entity_id": ENTITY}
    # A cancelled registration cancels the request itself: the client sees no answer.
    with contextlib.suppress(asyncio.CancelledError, concurrent.futures.CancelledError):
        await e2e_api.post("/v1/watches", json=payload, headers=auth())
    [watch] = (await e2e_api.get("/v1/watches", headers=auth())).json()["items"]
    assert await run_out(e2e_api, watch["id"], run_burst, reconciler) == "delivered"
    assert raised
    done = await settled(e2e_api, watch["id"])
    assert {r.headers["webhook-id"] for r in receiver.requests} == {done["event_id"]}
    assert len(receiver.requests) == 1 + len(answers)


async def delivered_once(
    api: Client, run_burst: Burst, simulator: SimulatorControl, receiver: Receiver
) -> dict[str, Any]:
    task = await simulator.create_task(entity_id=ENTITY)
    watch = await register(api, task.id, receiver.url)
    await run_burst()
    return await settled(api, watch["id"])


async def test_a_redelivery_whose_job_was_lost_is_made(
    fail_once: Callable[[str, BaseException], list[str]],
    e2e_api: Client,
    run_burst: Burst,
    reconciler: Reconciler,
    store: Store,
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    first = await delivered_once(e2e_api, run_burst, simulator, receiver)
    raised = fail_once("schedule_delivery", RuntimeError("injected fault"))
    lost = await e2e_api.post(f"/v1/watches/{first['id']}/redeliver", headers=auth())
    assert raised
    assert lost.status_code == 500
    await run_burst()
    assert await state_of(e2e_api, first["id"]) == "delivering"
    await rescued(reconciler, run_burst, store, "delivery")
    assert (await settled(e2e_api, first["id"]))["state"] == "delivered"
    assert [r.headers["webhook-id"] for r in receiver.requests] == [first["event_id"]] * 2


async def test_a_redelivery_asked_again_while_under_way_is_answered_not_refused(
    e2e_api: Client, run_burst: Burst, simulator: SimulatorControl, receiver: Receiver
) -> None:
    first = await delivered_once(e2e_api, run_burst, simulator, receiver)
    path = f"/v1/watches/{first['id']}/redeliver"
    assert (await e2e_api.post(path, headers=auth())).status_code < 300
    # The client lost the first answer and asks again before the worker got to it.
    again = await e2e_api.post(path, headers=auth())
    assert again.status_code < 300, again.text
    assert again.json()["state"] == "delivering"
    await run_burst()
    assert (await settled(e2e_api, first["id"]))["state"] == "delivered"
    assert len(receiver.requests) == 2


async def test_a_registration_whose_first_round_was_lost_is_polled(
    fail_once: Callable[[str, BaseException], list[str]],
    e2e_api: Client,
    run_burst: Burst,
    reconciler: Reconciler,
    store: Store,
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    raised = fail_once("schedule_round", RuntimeError("injected fault"))
    task = await simulator.create_task(entity_id=ENTITY)
    payload = {"task_id": task.id, "callback_url": receiver.url, "entity_id": ENTITY}
    lost = await e2e_api.post("/v1/watches", json=payload, headers=auth())
    assert raised
    assert lost.status_code == 500
    [watch] = (await e2e_api.get("/v1/watches", headers=auth())).json()["items"]
    assert await state_of(e2e_api, watch["id"]) == "polling"
    await rescued(reconciler, run_burst, store, "poll")
    assert (await settled(e2e_api, watch["id"]))["state"] == "delivered"


async def test_a_push_whose_round_was_lost_is_still_polled_first(
    fail_once: Callable[[str, BaseException], list[str]],
    push_api: Client,
    push_settings: Settings,
    store: Store,
    queue: Queue,
    simulator: SimulatorControl,
    receiver: Receiver,
    start_worker: Any,
) -> None:
    await start_worker(push_settings)  # polls every 30 s: only the push makes it quick
    task = await simulator.create_task(entity_id=ENTITY, outcome="never")
    watch = await register(push_api, task.id, receiver.url)
    await first_poll_done(push_api, watch["id"])
    await simulator.complete(task.id)
    raised = fail_once("schedule_round_now", RuntimeError("injected fault"))
    body = push_body(task.id)
    await push_api.post("/v1/monite/webhooks", content=body, headers=signed(body))
    assert raised
    # The push made the watch due first; its round job was lost, the due set still says so.
    await asyncio.sleep(0.01)  # a step due in the very millisecond the reconciler reads is not late
    report = await Reconciler(store, queue, slack_ms=0).run()
    assert report.rounds == 1
    assert (await settled(push_api, watch["id"], within_s=5))["state"] == "delivered"
