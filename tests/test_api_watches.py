"""The watch API: registration, validation, scoping to the calling client, cancel, listing."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from service.clock import wall_ms
from service.storage import Store
from service.storage.idempotency import Claim
from tests.conftest import auth

TASK = "2b9f1c3e-7a41-4d2a-9a51-0c7c1f5e8d10"
ENTITY = "9d3c1b2a-1111-4a2b-8c3d-4e5f6a7b8c9d"
CALLBACK = "http://127.0.0.1:9/hook"

Client = AsyncTestClient[Any]


def body(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"task_id": TASK, "callback_url": CALLBACK, "entity_id": ENTITY}
    payload.update(changes)
    return payload


async def test_registration_returns_the_watch_and_its_generated_secret_once(api: Client) -> None:
    created = await api.post("/v1/watches", json=body(metadata={"erp_ref": "PO-1"}), headers=auth())
    assert created.status_code == 201
    watch = created.json()
    assert watch["state"] == "polling"
    assert watch["id"].startswith("wat_")
    assert watch["secret"].startswith("whsec_")
    assert watch["metadata"] == {"erp_ref": "PO-1"}
    read = await api.get(f"/v1/watches/{watch['id']}", headers=auth())
    assert read.status_code == 200
    assert "secret" not in read.json()
    assert [t["to"] for t in read.json()["transitions"]] == ["polling"]


async def test_a_first_poll_goes_before_overdue_re_polls_of_its_group(
    api: Client, store: Store
) -> None:
    older = (await api.post("/v1/watches", json=body(), headers=auth())).json()
    overdue = wall_ms() - 60_000
    await store.schedule.reschedule(ENTITY, {older["id"]: (overdue, overdue)})
    newer = (
        await api.post(
            "/v1/watches", json=body(task_id="5e0c2f4a-9b1d-4c8e-a7f3-2d6b8e1c0a94"), headers=auth()
        )
    ).json()

    claimed = await store.schedule.claim_due(ENTITY, now_ms=wall_ms(), limit=1, lease_ms=1000)
    assert claimed == [newer["id"]]


async def test_a_callers_own_secret_is_never_echoed(api: Client) -> None:
    secret = "whsec_" + "A" * 43 + "="
    created = await api.post("/v1/watches", json=body(secret=secret), headers=auth())
    assert created.status_code == 201
    assert "secret" not in created.json()


async def test_the_same_registration_again_answers_200_with_the_same_watch(api: Client) -> None:
    first = await api.post("/v1/watches", json=body(), headers=auth())
    again = await api.post("/v1/watches", json=body(), headers=auth())
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert "secret" not in again.json()


async def test_an_idempotency_key_replays_the_first_answer(api: Client) -> None:
    headers = {**auth(), "Idempotency-Key": "req-42"}
    first = await api.post("/v1/watches", json=body(), headers=headers)
    again = await api.post("/v1/watches", json=body(), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


async def test_an_idempotency_key_reused_with_another_request_is_refused_naming_it(
    api: Client,
) -> None:
    headers = {**auth(), "Idempotency-Key": "req-43"}
    first = await api.post("/v1/watches", json=body(), headers=headers)
    other = await api.post(
        "/v1/watches", json=body(task_id="7d0c6a52-94a3-4d8e-b1f4-3e5b2a9c7f01"), headers=headers
    )
    assert first.status_code == 201
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert len((await api.get("/v1/watches", headers=auth())).json()["items"]) == 1


async def test_an_idempotency_key_another_request_holds_gets_409(api: Client, store: Store) -> None:
    # A document upload under this key is still making its Monite task.
    assert await store.idempotency.claim(store.keys.idempotency("alpha", "req-7"), 60) == Claim()
    headers = {**auth(), "Idempotency-Key": "req-7"}
    answer = await api.post("/v1/watches", json=body(), headers=headers)
    assert answer.status_code == 409
    assert (await api.get("/v1/watches", headers=auth())).json()["items"] == []


async def test_requests_without_a_valid_key_are_refused(api: Client) -> None:
    missing = await api.post("/v1/watches", json=body())
    wrong = await api.post("/v1/watches", json=body(), headers={"Authorization": "Bearer nope"})
    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert missing.headers["content-type"].startswith("application/problem+json")


async def test_another_clients_watch_is_not_found_everywhere(api: Client) -> None:
    watch_id = (await api.post("/v1/watches", json=body(), headers=auth("alpha"))).json()["id"]
    beta = auth("beta")
    assert (await api.get(f"/v1/watches/{watch_id}", headers=beta)).status_code == 404
    assert (await api.delete(f"/v1/watches/{watch_id}", headers=beta)).status_code == 404
    assert (await api.get(f"/v1/watches/{watch_id}/deliveries", headers=beta)).status_code == 404
    assert (await api.post(f"/v1/watches/{watch_id}/redeliver", headers=beta)).status_code == 404
    assert (
        await api.post(f"/v1/watches/{watch_id}/rotate-secret", headers=beta)
    ).status_code == 404
    assert (await api.get("/v1/watches", headers=beta)).json()["items"] == []
    still = await api.get(f"/v1/watches/{watch_id}", headers=auth("alpha"))
    assert still.json()["state"] == "polling"


async def test_cancel_stops_polling_and_is_idempotent(api: Client) -> None:
    watch_id = (await api.post("/v1/watches", json=body(), headers=auth())).json()["id"]
    first = await api.delete(f"/v1/watches/{watch_id}", headers=auth())
    again = await api.delete(f"/v1/watches/{watch_id}", headers=auth())
    assert first.status_code == 200
    assert first.json()["state"] == "cancelled"
    assert again.status_code == 200
    assert again.json()["state"] == "cancelled"


async def test_a_cancelled_registration_can_be_made_again(api: Client) -> None:
    first = (await api.post("/v1/watches", json=body(), headers=auth())).json()["id"]
    await api.delete(f"/v1/watches/{first}", headers=auth())
    again = await api.post("/v1/watches", json=body(), headers=auth())
    assert again.status_code == 201
    assert again.json()["id"] != first


async def test_redelivery_of_a_watch_still_polling_is_refused(api: Client) -> None:
    watch_id = (await api.post("/v1/watches", json=body(), headers=auth())).json()["id"]
    answer = await api.post(f"/v1/watches/{watch_id}/redeliver", headers=auth())
    assert answer.status_code == 409
    assert answer.json()["errors"][0]["field"] == "state"


async def test_listing_filters_and_paginates(api: Client) -> None:
    tasks = [f"00000000-0000-4000-8000-00000000000{n}" for n in range(5)]
    for task in tasks:
        await api.post("/v1/watches", json=body(task_id=task), headers=auth())
    page = await api.get("/v1/watches", params={"limit": 2}, headers=auth())
    assert len(page.json()["items"]) == 2
    assert page.json()["next_cursor"]
    rest = await api.get(
        "/v1/watches", params={"limit": 10, "cursor": page.json()["next_cursor"]}, headers=auth()
    )
    ids = [w["task_id"] for w in page.json()["items"] + rest.json()["items"]]
    assert sorted(ids) == sorted(tasks)
    assert rest.json()["next_cursor"] is None
    only = await api.get("/v1/watches", params={"task_id": tasks[3]}, headers=auth())
    assert [w["task_id"] for w in only.json()["items"]] == [tasks[3]]
    delivered = await api.get("/v1/watches", params={"state": "delivered"}, headers=auth())
    assert delivered.json()["items"] == []


async def test_rotating_the_secret_returns_a_new_one_and_a_grace_period(api: Client) -> None:
    created = (await api.post("/v1/watches", json=body(), headers=auth())).json()
    rotated = await api.post(f"/v1/watches/{created['id']}/rotate-secret", headers=auth())
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != created["secret"]
    assert rotated.json()["previous_valid_until"] is not None


async def test_unknown_event_is_not_found(api: Client) -> None:
    answer = await api.get("/v1/events/evt_01ARZ3NDEKTSV4RRFFQ69G5FAV", headers=auth())
    assert answer.status_code == 404
