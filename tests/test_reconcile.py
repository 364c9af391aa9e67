"""The reconciler finds overdue next steps in their indexes and sends them on, boundedly."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from litestar.testing import AsyncTestClient

from service.clock import now_utc
from service.domain.watch import Watch, WatchState
from service.reconcile import Reconciler
from service.storage import Store
from tests.test_store import become, create, finish, gone, keys_of, make_watch


def delivering(next_in_s: float = 0.0, lease_s: float | None = None):  # type: ignore[no-untyped-def]
    def mutate(w: Watch) -> Watch:
        w.state, w.event_id, w.delivery_series = WatchState.DELIVERING, "evt_1", 1
        w.next_attempt_at = now_utc() + timedelta(seconds=next_in_s)
        if lease_s is not None:
            w.delivery_in_flight_until = now_utc() + timedelta(seconds=lease_s)
        return w

    return mutate


async def queued_jobs(store: Store) -> list[str]:
    return [j.decode() for j in await store.redis.zrange(store.keys.queue(), 0, -1)]


async def test_a_delivery_whose_job_is_lost_gets_its_attempt_enqueued(
    store: Store, reconciler: Reconciler
) -> None:
    watch, _ = await create(store, make_watch())
    await store.watches.update(watch.id, delivering())
    report = await reconciler.run()
    assert report.deliveries == 1
    assert await queued_jobs(store) == [store.keys.job_id("deliver", watch.id, "1", "1")]


async def test_a_delivery_still_queued_is_not_enqueued_twice(
    store: Store, reconciler: Reconciler
) -> None:
    watch, _ = await create(store, make_watch())
    await store.watches.update(watch.id, delivering())
    await reconciler.run()
    assert (await reconciler.run()).deliveries == 0
    assert len(await queued_jobs(store)) == 1


async def test_a_retry_not_yet_due_and_an_attempt_in_flight_are_left_alone(
    store: Store, reconciler: Reconciler
) -> None:
    waiting, _ = await create(store, make_watch(task_id="t-wait"))
    in_flight, _ = await create(store, make_watch(task_id="t-flight"))
    await store.watches.update(waiting.id, delivering(next_in_s=60))
    await store.watches.update(in_flight.id, delivering(lease_s=60))
    assert (await reconciler.run()).deliveries == 0
    assert await queued_jobs(store) == []


async def test_an_attempt_whose_worker_died_is_sent_on_once_its_lease_ends(
    store: Store, reconciler: Reconciler
) -> None:
    watch, _ = await create(store, make_watch())
    await store.watches.update(watch.id, delivering(lease_s=-1))
    assert (await reconciler.run()).deliveries == 1


async def test_a_group_whose_round_was_lost_gets_one_and_is_counted(
    store: Store, reconciler: Reconciler
) -> None:
    # Due a second ago: a step due in the very millisecond the reconciler reads it is not late.
    await create(store, make_watch(), late_ms=1000)
    report = await reconciler.run()
    assert report.rounds == 1
    [job] = await queued_jobs(store)
    assert job.startswith(store.keys.job_id("round", "-"))
    counts = await store.retention.state_counts()
    assert counts["reconciled:poll"] == 1
    assert counts["overdue_ms:poll"] >= 0


async def test_a_group_a_round_is_polling_is_left_to_that_round(
    store: Store, reconciler: Reconciler
) -> None:
    await create(store, make_watch())
    assert await store.schedule.lock_round("-", "rnd_1", 30_000)
    assert (await reconciler.run()).rounds == 0
    assert await queued_jobs(store) == []


async def test_an_empty_group_is_forgotten(store: Store, reconciler: Reconciler) -> None:
    watch, _ = await create(store, make_watch())
    await store.watches.update(watch.id, become(WatchState.CANCELLED))
    await reconciler.run()
    assert await store.schedule.groups() == []


async def test_the_oldest_overdue_delivery_is_measured(
    store: Store, reconciler: Reconciler
) -> None:
    watch, _ = await create(store, make_watch())
    await store.watches.update(watch.id, delivering(next_in_s=-30))
    report = await reconciler.run()
    assert 29_000 <= report.oldest_delivery_ms < 40_000
    assert (await store.retention.state_counts())[
        "overdue_ms:delivery"
    ] == report.oldest_delivery_ms


async def test_reconcile_sweeps_what_expired_watches_left_behind(
    store: Store, reconciler: Reconciler
) -> None:
    store.watches.retention_s = 1
    watch, _ = await create(store, make_watch())
    await finish(store, watch, WatchState.DELIVERED)
    await gone(store, watch)
    assert (await reconciler.run()).swept == 1
    assert await keys_of(store, watch) == []


async def test_the_reconcilers_findings_are_exported_as_metrics(
    api: AsyncTestClient[Any], store: Store, reconciler: Reconciler
) -> None:
    watch, _ = await create(store, make_watch())
    await store.watches.update(watch.id, delivering(next_in_s=-30))
    await reconciler.run()
    text = (await api.get("/metrics")).text
    assert 'ocr_relay_reconciled_total{step="delivery"} 1.0' in text
    assert 'ocr_relay_oldest_overdue_step_seconds{step="delivery"} 3' in text
