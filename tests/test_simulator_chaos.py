"""The simulator's chaos knobs: 5xx, latency, hangs, malformed bodies, forced 404 and error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from service.simulator import SimulatorControl

ENTITY = "7e6d5c4b-3a29-4817-a6f5-e4d3c2b1a098"


@pytest.fixture
async def monite(simulator: SimulatorControl) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``/v1`` with a token for ``ENTITY`` (taken before any chaos)."""
    headers = simulator.headers(await simulator.token(), ENTITY)
    async with httpx.AsyncClient(base_url=simulator.base_url, headers=headers) as http:
        yield http


async def test_error_rate_one_answers_every_request_with_5xx(
    simulator: SimulatorControl, monite: httpx.AsyncClient
) -> None:
    await simulator.chaos(error_rate=1.0)
    answers = [await monite.get("/ocr_tasks") for _ in range(12)]
    assert all(r.status_code in (500, 502, 503) for r in answers)
    assert all("message" in r.json()["error"] for r in answers)
    assert all(r.headers["retry-after"] == "1" for r in answers if r.status_code == 503)


async def test_latency_longer_than_the_client_timeout_times_it_out(
    simulator: SimulatorControl, monite: httpx.AsyncClient
) -> None:
    await simulator.chaos(latency_s=5.0)
    with pytest.raises(httpx.ReadTimeout):
        await monite.get("/ocr_tasks", timeout=0.3)


async def test_hang_gets_no_answer_before_the_client_gives_up(
    simulator: SimulatorControl, monite: httpx.AsyncClient
) -> None:
    await simulator.chaos(hang_rate=1.0)
    with pytest.raises(httpx.ReadTimeout):
        await monite.get("/ocr_tasks", timeout=0.3)


async def test_hang_past_hang_s_answers_504(
    simulator: SimulatorControl, monite: httpx.AsyncClient
) -> None:
    await simulator.chaos(hang_rate=1.0, hang_s=0.1)
    assert (await monite.get("/ocr_tasks")).status_code == 504


async def test_malformed_rate_one_breaks_the_json_of_successes(
    simulator: SimulatorControl, monite: httpx.AsyncClient
) -> None:
    task = await simulator.create_task(entity_id=ENTITY)
    await simulator.chaos(malformed_rate=1.0)
    response = await monite.get(f"/ocr_tasks/{task.id}")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


async def test_not_found_ids_answer_404_and_leave_lists(
    simulator: SimulatorControl, monite: httpx.AsyncClient
) -> None:
    hidden = await simulator.create_task(entity_id=ENTITY)
    shown = await simulator.create_task(entity_id=ENTITY)
    await simulator.chaos(not_found_ids=[hidden.id])
    assert (await monite.get(f"/ocr_tasks/{hidden.id}")).status_code == 404
    listed = (await monite.get("/ocr_tasks")).json()["data"]
    assert [t["id"] for t in listed] == [shown.id]


async def test_error_ids_finish_in_error(
    simulator: SimulatorControl, monite: httpx.AsyncClient
) -> None:
    task = await simulator.create_task(entity_id=ENTITY, document_type="invoice")
    await simulator.chaos(error_ids=[task.id])
    body = (await monite.get(f"/ocr_tasks/{task.id}")).json()
    assert body["status"] == "error"
    assert "recognized_data" not in body


async def test_chaos_patch_keeps_fields_it_does_not_name(simulator: SimulatorControl) -> None:
    await simulator.chaos(error_rate=0.5)
    chaos = await simulator.chaos(latency_s=0.1)
    assert (chaos.error_rate, chaos.latency_s) == (0.5, 0.1)


@pytest.mark.parametrize("body", [{"error_rate": 2}, {"hang_s": 0}, {"colour": "red"}, []])
async def test_invalid_chaos_patch_is_422_and_changes_nothing(
    simulator: SimulatorControl, body: object
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.patch(f"{simulator.root_url}/_sim/chaos", json=body)
        current = (await http.get(f"{simulator.root_url}/_sim/chaos")).json()
    assert response.status_code == 422
    assert current["error_rate"] == 0.0
    assert current["hang_s"] == 60.0


async def test_reset_ends_chaos(simulator: SimulatorControl, monite: httpx.AsyncClient) -> None:
    await simulator.chaos(error_rate=1.0)
    await simulator.reset()
    token = await simulator.token()
    response = await monite.get("/ocr_tasks", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


async def test_settings_never_show_the_webhook_secret(simulator: SimulatorControl) -> None:
    shown = await simulator.configure(webhook_secret="whsec_do-not-show")
    assert "whsec_do-not-show" not in json.dumps(shown)
