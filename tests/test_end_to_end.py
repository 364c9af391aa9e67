"""The mission, end to end: register → poll the simulator → normalize → signed callback."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import msgspec
from arq.worker import Worker
from litestar.testing import AsyncTestClient

from service.domain.signing import verify_signature
from service.simulator import SimTask, SimulatorControl
from tests.conftest import Receiver, Reply, auth
from tests.test_normalize import shared_fixture

ENTITY = "9d3c1b2a-1111-4a2b-8c3d-4e5f6a7b8c9d"
Client = AsyncTestClient[Any]


def invoice_de_data() -> dict[str, Any]:
    """The shared German invoice's ``recognized_data``: a number, a seller, lines, a VAT id."""
    task = json.loads(shared_fixture("monite", "ocr_task_invoice_de.json").read_text())
    data: dict[str, Any] = task["recognized_data"]
    return data


async def invoice_de_task(
    simulator: SimulatorControl, data: dict[str, Any] | None = None
) -> SimTask:
    """A finished simulator task that recognized ``data`` (by default the German invoice)."""
    return await simulator.create_task(
        entity_id=ENTITY, document_type="invoice", recognized_data=data or invoice_de_data()
    )


async def register(api: Client, task_id: str, callback_url: str, **extra: Any) -> dict[str, Any]:
    payload = {"task_id": task_id, "callback_url": callback_url, "entity_id": ENTITY, **extra}
    answer = await api.post("/v1/watches", json=payload, headers=auth())
    assert answer.status_code == 201, answer.text
    watch: dict[str, Any] = answer.json()
    return watch


async def settled(api: Client, watch_id: str, within_s: float = 15.0) -> dict[str, Any]:
    """The watch once it is delivered, failed or cancelled."""
    deadline = time.monotonic() + within_s
    while True:
        watch: dict[str, Any] = (await api.get(f"/v1/watches/{watch_id}", headers=auth())).json()
        if watch["state"] in ("delivered", "failed", "cancelled"):
            return watch
        if time.monotonic() > deadline:
            raise AssertionError(f"watch still {watch['state']}: {watch}")
        await asyncio.sleep(0.05)


async def test_a_recognized_invoice_reaches_the_callback_signed(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    task = await simulator.create_task(entity_id=ENTITY, document_type="invoice")
    watch = await register(e2e_api, task.id, receiver.url, metadata={"erp_ref": "PO-4711"})
    done = await settled(e2e_api, watch["id"])
    assert done["state"] == "delivered"
    assert done["event_type"] == "invoice.recognized"
    [request] = await receiver.wait_for(1)
    verify_signature(watch["secret"], request.headers, request.body)
    event = msgspec.json.decode(request.body)
    assert event["type"] == "invoice.recognized"
    assert event["data"]["watch_id"] == watch["id"]
    assert event["data"]["metadata"] == {"erp_ref": "PO-4711"}
    assert event["data"]["document"]["kind"] == "invoice"
    assert request.headers["webhook-id"] == done["event_id"]
    stored = await e2e_api.get(f"/v1/events/{done['event_id']}", headers=auth())
    assert stored.content == request.body


async def test_fifty_watches_with_mixed_outcomes_each_get_one_right_event(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    expected: dict[str, tuple[str, str]] = {}  # watch id -> (event type, final state)
    kinds = [
        ("invoice", "success", "invoice.recognized", "delivered"),
        ("credit_note", "success", "credit_note.recognized", "delivered"),
        ("receipt", "success", "receipt.recognized", "delivered"),
        ("invoice", "error", "ocr.failed", "failed"),
    ]
    for n in range(40):
        doc_type, outcome, event_type, state = kinds[n % len(kinds)]
        duration = 0.6 if n % 5 == 0 else 0.0  # some tasks are slow
        task = await simulator.create_task(
            entity_id=ENTITY,
            document_type=doc_type,
            outcome=outcome,
            duration_s=duration,  # type: ignore[arg-type]
        )
        watch = await register(e2e_api, task.id, receiver.url)
        expected[watch["id"]] = (event_type, state)
    for n in range(5):  # tasks Monite does not know
        watch = await register(e2e_api, f"00000000-0000-4000-8000-0000000000{n:02d}", receiver.url)
        expected[watch["id"]] = ("ocr.failed", "failed")
    for _ in range(5):  # tasks that never finish before the watch's deadline
        task = await simulator.create_task(entity_id=ENTITY, outcome="never")
        watch = await register(e2e_api, task.id, receiver.url, deadline_s=1)
        expected[watch["id"]] = ("ocr.failed", "failed")

    finals = {wid: await settled(e2e_api, wid, within_s=30) for wid in expected}
    requests = await receiver.wait_for(len(expected))
    by_watch: dict[str, list[dict[str, Any]]] = {}
    for request in requests:
        event = msgspec.json.decode(request.body)
        by_watch.setdefault(event["data"]["watch_id"], []).append(event)
    assert set(by_watch) == set(expected)
    for watch_id, (event_type, state) in expected.items():
        assert [e["type"] for e in by_watch[watch_id]] == [event_type]
        assert finals[watch_id]["state"] == state
        assert finals[watch_id]["event_type"] == event_type
    codes = {f["failure"]["code"] for f in finals.values() if f["failure"]}
    assert codes == {"ocr_error", "task_not_found", "deadline_exceeded"}


async def test_a_receiver_failing_three_times_gets_the_same_event_on_the_fourth_attempt(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    receiver.script([500, 500, 500, 200])
    task = await simulator.create_task(entity_id=ENTITY)
    watch = await register(e2e_api, task.id, receiver.url)
    done = await settled(e2e_api, watch["id"])
    assert done["state"] == "delivered"
    requests = await receiver.wait_for(4)
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1
    log = (await e2e_api.get(f"/v1/watches/{watch['id']}/deliveries", headers=auth())).json()
    assert [a["status_code"] for a in log["items"]] == [500, 500, 500, 200]
    assert [a["outcome"] for a in log["items"]] == ["retry", "retry", "retry", "delivered"]


async def test_410_gone_stops_delivery(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    receiver.script([410])
    task = await simulator.create_task(entity_id=ENTITY)
    watch = await register(e2e_api, task.id, receiver.url)
    done = await settled(e2e_api, watch["id"])
    assert done["state"] == "failed"
    assert done["failure"]["code"] == "callback_gone"
    await asyncio.sleep(0.5)
    assert len(receiver.requests) == 1


async def test_a_redirect_is_not_followed_and_counts_as_a_failed_attempt(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, make_receiver: Any
) -> None:
    target: Receiver = await make_receiver()
    source: Receiver = await make_receiver()
    source.default = Reply(status=302, headers={"location": target.url})
    task = await simulator.create_task(entity_id=ENTITY)
    watch = await register(e2e_api, task.id, source.url)
    done = await settled(e2e_api, watch["id"])
    assert done["state"] == "failed"
    assert done["failure"]["code"] == "delivery_exhausted"
    assert target.requests == []
    log = (await e2e_api.get(f"/v1/watches/{watch['id']}/deliveries", headers=auth())).json()
    assert {a["outcome"] for a in log["items"]} == {"rejected"}


async def test_a_receiver_slower_than_the_timeout_is_retried(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    receiver.script([Reply(status=200, delay_s=3.0)])  # the delivery timeout is 2 s in tests
    task = await simulator.create_task(entity_id=ENTITY)
    watch = await register(e2e_api, task.id, receiver.url)
    done = await settled(e2e_api, watch["id"])
    assert done["state"] == "delivered"
    log = (await e2e_api.get(f"/v1/watches/{watch['id']}/deliveries", headers=auth())).json()
    assert log["items"][0]["outcome"] == "retry"
    assert log["items"][0]["status_code"] is None
    assert log["items"][-1]["outcome"] == "delivered"


async def test_redelivery_sends_the_same_event_again(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    task = await simulator.create_task(entity_id=ENTITY)
    watch = await register(e2e_api, task.id, receiver.url)
    await settled(e2e_api, watch["id"])
    again = await e2e_api.post(f"/v1/watches/{watch['id']}/redeliver", headers=auth())
    assert again.status_code == 202
    first, second = await receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    done = await settled(e2e_api, watch["id"])
    assert done["state"] == "delivered"


async def test_cancel_during_polling_stops_the_polls(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    task = await simulator.create_task(entity_id=ENTITY, outcome="never")
    watch = await register(e2e_api, task.id, receiver.url)
    await asyncio.sleep(0.8)
    cancelled = await e2e_api.delete(f"/v1/watches/{watch['id']}", headers=auth())
    assert cancelled.json()["state"] == "cancelled"
    polls = cancelled.json()["polls"]
    assert polls >= 1
    await asyncio.sleep(1.5)
    later = (await e2e_api.get(f"/v1/watches/{watch['id']}", headers=auth())).json()
    assert later["polls"] == polls
    assert later["state"] == "cancelled"
    assert receiver.requests == []


async def test_twenty_concurrent_identical_registrations_make_one_watch_and_one_poll(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    task = await simulator.create_task(entity_id=ENTITY)
    payload = {"task_id": task.id, "callback_url": receiver.url, "entity_id": ENTITY}
    answers = await asyncio.gather(
        *(e2e_api.post("/v1/watches", json=payload, headers=auth()) for _ in range(20))
    )
    assert sorted(a.status_code for a in answers) == [200] * 19 + [201]
    [watch_id] = {a.json()["id"] for a in answers}
    done = await settled(e2e_api, watch_id)
    assert done["polls"] == 1
    await receiver.wait_for(1)
    await asyncio.sleep(0.3)
    assert len(receiver.requests) == 1


async def test_a_429_from_monite_delays_the_next_poll_by_retry_after(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    await simulator.configure(rate_limit=0.5, rate_burst=1)
    await simulator.token()  # spends the only request of the burst: the next call gets a 429
    task = await simulator.create_task(entity_id=ENTITY)
    started = time.monotonic()
    watch = await register(e2e_api, task.id, receiver.url)
    done = await settled(e2e_api, watch["id"], within_s=20)
    assert done["state"] == "delivered"
    counters = await simulator.counters()
    assert sum(c.throttled for c in counters.clients.values()) >= 1
    assert time.monotonic() - started >= 1.0


async def test_one_burst_of_the_queue_polls_and_delivers_a_finished_task(
    e2e_api: Client, run_burst: Any, simulator: SimulatorControl, receiver: Receiver
) -> None:
    task = await simulator.create_task(entity_id=ENTITY)
    watch = await register(e2e_api, task.id, receiver.url)
    assert await run_burst() >= 2  # the poll round, then the delivery it enqueued
    done = (await e2e_api.get(f"/v1/watches/{watch['id']}", headers=auth())).json()
    assert done["state"] == "delivered"
    assert len(receiver.requests) == 1
