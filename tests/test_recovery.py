"""Getting invoices back after a receiver's outage: ``POST /v1/watches/redeliver`` for clients,
the console's Receivers page and Recover for operators."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from service.callbacks.sealing import Sealer
from service.clock import from_ms
from service.operations import Actor, WatchService
from service.queue import Queue
from service.settings import Settings
from service.simulator import SimulatorControl
from service.storage import Store
from tests.conftest import Receiver, Reply, auth, csrf_of
from tests.test_end_to_end import ENTITY, settled

Client = AsyncTestClient[Any]
HOUR_AGO = (datetime.now(UTC) - timedelta(hours=1)).isoformat()


async def exhausted(
    api: Client, simulator: SimulatorControl, receiver: Receiver, run_burst: Any, client: str
) -> str:
    """A watch of ``client`` whose delivery ended ``delivery_exhausted`` (the receiver is down)."""
    receiver.default = Reply(status=503)
    task = await simulator.create_task(entity_id=ENTITY, document_type="invoice")
    answer = await api.post(
        "/v1/watches",
        json={"task_id": task.id, "callback_url": receiver.url, "entity_id": ENTITY},
        headers=auth(client),
    )
    watch_id: str = answer.json()["id"]
    await run_burst()
    done = (await api.get(f"/v1/watches/{watch_id}", headers=auth(client))).json()
    assert done["failure"]["code"] == "delivery_exhausted"
    return watch_id


async def redeliver_failed(api: Client, client: str = "alpha", **body: Any) -> Any:
    payload = {"state": "failed", "failure_code": "delivery_exhausted", "since": HOUR_AGO, **body}
    return await api.post("/v1/watches/redeliver", json=payload, headers=auth(client))


async def test_a_client_gets_its_exhausted_watches_delivered_again_in_one_call(
    e2e_api: Client, simulator: SimulatorControl, receiver: Receiver, run_burst: Any
) -> None:
    first = await exhausted(e2e_api, simulator, receiver, run_burst, "alpha")
    second = await exhausted(e2e_api, simulator, receiver, run_burst, "alpha")
    receiver.default = Reply(status=200)
    answer = await redeliver_failed(e2e_api)
    assert answer.status_code == 200, answer.text
    assert sorted(answer.json()["redelivered"]) == sorted([first, second])
    assert answer.json()["more"] is False
    await run_burst()
    for watch_id in (first, second):
        assert (await settled(e2e_api, watch_id))["state"] == "delivered"


async def test_redelivering_again_delivers_nothing_twice(
    e2e_api: Client, simulator: SimulatorControl, receiver: Receiver, run_burst: Any
) -> None:
    watch_id = await exhausted(e2e_api, simulator, receiver, run_burst, "alpha")
    during_outage = len(receiver.requests)
    receiver.default = Reply(status=200)
    assert (await redeliver_failed(e2e_api)).json()["redelivered"] == [watch_id]
    assert (await redeliver_failed(e2e_api)).json()["redelivered"] == []
    await run_burst()
    assert len(receiver.requests) == during_outage + 1
    assert (await settled(e2e_api, watch_id))["state"] == "delivered"


async def test_a_client_never_redelivers_another_clients_watches(
    e2e_api: Client, simulator: SimulatorControl, receiver: Receiver, run_burst: Any
) -> None:
    theirs = await exhausted(e2e_api, simulator, receiver, run_burst, "beta")
    answer = await redeliver_failed(e2e_api, "alpha")
    assert answer.json()["redelivered"] == []
    still = (await e2e_api.get(f"/v1/watches/{theirs}", headers=auth("beta"))).json()
    assert still["state"] == "failed"


async def test_a_bulk_redelivery_is_bounded_and_says_there_is_more(
    e2e_api: Client, simulator: SimulatorControl, receiver: Receiver, run_burst: Any
) -> None:
    for _ in range(3):
        await exhausted(e2e_api, simulator, receiver, run_burst, "alpha")
    first = (await redeliver_failed(e2e_api, limit=2)).json()
    assert len(first["redelivered"]) == 2
    assert first["more"] is True
    rest = (await redeliver_failed(e2e_api, limit=2, until=first["next_until"])).json()
    assert len(rest["redelivered"]) == 1
    assert not set(rest["redelivered"]) & set(first["redelivered"])
    assert (rest["more"], rest["next_until"]) == (False, None)


async def test_the_time_range_selects_by_the_last_failed_attempt(
    e2e_api: Client, simulator: SimulatorControl, receiver: Receiver, run_burst: Any
) -> None:
    await exhausted(e2e_api, simulator, receiver, run_burst, "alpha")
    two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    earlier = await redeliver_failed(e2e_api, since=two_hours_ago, until=HOUR_AGO)
    assert earlier.json()["redelivered"] == []
    assert len((await redeliver_failed(e2e_api)).json()["redelivered"]) == 1


async def test_a_bad_bulk_redelivery_names_its_field(e2e_api: Client) -> None:
    cases = {
        "until": {"until": "2020-01-01T00:00:00Z"},
        "since": {"since": "2026-11-01T00:00:00"},
        "state": {"state": "delivered"},
        "failure_code": {"failure_code": "task_not_found"},
        "limit": {"limit": 501},
    }
    for field, body in cases.items():
        answer = await redeliver_failed(e2e_api, **body)
        assert answer.status_code in (400, 422), (field, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert field in answer.text, (field, answer.text)


async def test_the_receivers_page_shows_a_failing_host_and_its_watches(
    operator: Client, simulator: SimulatorControl, receiver: Receiver, run_burst: Any
) -> None:
    watch_id = await exhausted(operator, simulator, receiver, run_burst, "alpha")
    page = (await operator.get("/console/receivers")).text
    host = f"127.0.0.1:{receiver.port}"
    assert f"<code>{host}</code>" in page
    assert "0.0 %" in page  # every attempt failed
    detail = (await operator.get("/console/receivers", params={"host": host})).text
    assert watch_id in detail
    assert "delivery_exhausted" in detail


async def test_recover_redelivers_a_hosts_exhausted_watches_as_the_operator(
    operator: Client, simulator: SimulatorControl, receiver: Receiver, run_burst: Any
) -> None:
    watch_id = await exhausted(operator, simulator, receiver, run_burst, "beta")
    receiver.default = Reply(status=200)
    host = f"127.0.0.1:{receiver.port}"
    form = await operator.get("/console/receivers/recover", params={"host": host})
    assert "Recover 1 watch<" in form.text
    now = datetime.now(UTC)
    done = await operator.post(
        "/console/receivers/recover",
        data={
            "csrf": csrf_of(form.text),
            "confirm": "yes",
            "host": host,
            "since": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
            "until": (now + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"),
        },
    )
    assert "Redelivered 1, retried now 0." in done.text
    await run_burst()
    watch = (await operator.get(f"/v1/watches/{watch_id}", headers=auth("beta"))).json()
    assert watch["state"] == "delivered"
    redelivery = [t for t in watch["transitions"] if t["reason"] == "redelivery requested"]
    assert [t["by"] for t in redelivery] == ["operator:alice"]


async def test_recover_retries_now_a_watch_still_waiting_for_its_next_attempt(
    operator: Client,
    console_settings: Settings,
    start_worker: Any,
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    await start_worker(msgspec.structs.replace(console_settings, delivery_schedule_s=(0.0, 3600.0)))
    receiver.default = Reply(status=503)
    task = await simulator.create_task(entity_id=ENTITY, document_type="invoice")
    answer = await operator.post(
        "/v1/watches",
        json={"task_id": task.id, "callback_url": receiver.url, "entity_id": ENTITY},
        headers=auth(),
    )
    watch_id = answer.json()["id"]
    for _ in range(200):  # until the first attempt has failed; the next is due in an hour
        logged = await operator.get(f"/v1/watches/{watch_id}/deliveries", headers=auth())
        if logged.json()["items"]:
            break
        await asyncio.sleep(0.05)
    receiver.default = Reply(status=200)
    host = f"127.0.0.1:{receiver.port}"
    form = await operator.get("/console/receivers/recover", params={"host": host})
    done = await operator.post(
        "/console/receivers/recover",
        data={"csrf": csrf_of(form.text), "confirm": "yes", "host": host, "include_waiting": "yes"},
    )
    assert "Redelivered 0, retried now 1." in done.text
    assert (await settled(operator, watch_id))["state"] == "delivered"
    assert len(receiver.requests) == 2


async def test_a_recovery_goes_on_below_entries_delivered_since(
    e2e_api: Client,
    e2e_settings: Settings,
    store: Store,
    queue: Queue,
    simulator: SimulatorControl,
    receiver: Receiver,
    run_burst: Any,
) -> None:
    """Watches that failed an attempt and were delivered later stay in the failed-attempt index;
    a recovery that looks at only some entries per call must go on below them, not stop."""
    oldest = await exhausted(e2e_api, simulator, receiver, run_burst, "alpha")
    newer = [await exhausted(e2e_api, simulator, receiver, run_burst, "alpha") for _ in range(2)]
    service = WatchService(store, queue, Sealer.from_settings(e2e_settings))
    receiver.default = Reply(status=200)
    for watch_id in newer:
        await service.redeliver(Actor.client("alpha"), watch_id)
    await run_burst()
    since, until = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC)
    recover = functools.partial(
        service.recover,
        Actor.client("alpha"),
        "client",
        "alpha",
        failure_code="delivery_exhausted",
        since=since,
        scan=2,
    )
    first = await recover(until=until)
    assert (first.redelivered, first.more) == ([], True)
    assert first.next_until_ms is not None
    rest = await recover(until=from_ms(first.next_until_ms))
    assert rest.redelivered == [oldest]


async def test_the_recover_form_goes_on_from_where_a_bounded_recovery_stopped(
    operator: Client,
) -> None:
    form = await operator.get(
        "/console/receivers/recover",
        params={"host": "erp.example.com", "until": "2026-11-29T04:10:30.250000+00:00"},
    )
    assert 'name="until" type="datetime-local" value="2026-11-29T04:11"' in form.text
    bad = await operator.get(
        "/console/receivers/recover", params={"host": "erp.example.com", "until": "soon"}
    )
    assert bad.status_code == 400
    assert "until: &#39;soon&#39; is not a date and time" in bad.text
