"""Prometheus metrics: the API scrape shows cluster-wide watch counts; workers count their work."""

from __future__ import annotations

from typing import Any

from arq.worker import Worker
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from service import metrics
from service.simulator import SimulatorControl
from tests.conftest import Receiver, auth
from tests.test_end_to_end import ENTITY, register, settled

Client = AsyncTestClient[Any]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def counted(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_scrape_counts_watches_by_state(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    task = await simulator.create_task(entity_id=ENTITY)
    watch = await register(e2e_api, task.id, receiver.url)
    await settled(e2e_api, watch["id"])
    answer = await e2e_api.get("/metrics")
    assert answer.status_code == 200
    found = samples(answer.text)
    assert found[("ocr_relay_watches", (("state", "delivered"),))] == 1
    assert found[("ocr_relay_watches", (("state", "polling"),))] == 0
    assert found[("ocr_relay_watch_states_entered_total", (("state", "delivering"),))] == 1


async def test_polls_and_deliveries_are_counted(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    polls_before = counted("ocr_relay_polls_total", result="success")
    delivered_before = counted("ocr_relay_delivery_attempts_total", outcome="delivered")
    task = await simulator.create_task(entity_id=ENTITY)
    watch = await register(e2e_api, task.id, receiver.url)
    await settled(e2e_api, watch["id"])
    assert counted("ocr_relay_polls_total", result="success") == polls_before + 1
    assert counted("ocr_relay_delivery_attempts_total", outcome="delivered") == delivered_before + 1


async def test_api_answers_are_counted_by_route_template_method_and_status(api: Client) -> None:
    route = "/v1/watches/{watch_id}"
    before = counted("ocr_relay_api_requests_total", route=route, method="GET", status="404")
    durations = counted("ocr_relay_api_request_duration_seconds_count", route=route)
    for _ in range(2):
        answer = await api.get("/v1/watches/wat_0123456789abcdef", headers=auth())
        assert answer.status_code == 404
    after = counted("ocr_relay_api_requests_total", route=route, method="GET", status="404")
    assert after == before + 2
    assert counted("ocr_relay_api_request_duration_seconds_count", route=route) == durations + 2


async def test_an_unknown_path_is_counted_as_unmatched_not_by_its_path(api: Client) -> None:
    labels = {"route": "unmatched", "method": "GET", "status": "404"}
    before = counted("ocr_relay_api_requests_total", **labels)
    assert (await api.get("/no/such/path-4711")).status_code == 404
    assert counted("ocr_relay_api_requests_total", **labels) == before + 1
    scraped = (await api.get("/metrics")).text
    assert "path-4711" not in scraped
