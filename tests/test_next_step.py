"""The next-step invariant, at the store: every unfinished watch is in exactly one time index
(its group's poll-due set, or the delivery index), written by the same script that changes its
state; a finished watch is in none; and nothing a watch owns outlives it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from service.clock import now_utc, to_ms, wall_ms
from service.domain.schedule import PRIORITY_SHIFT_MS, due_ms_of, priority_score
from service.domain.watch import Watch, WatchState
from service.storage import Store
from service.storage.events import LoggedAttempt
from service.storage.schedule import PollRecord
from service.storage.watches import IllegalTransition
from tests.test_store import attempt_of, become, create, finish, gone, make_watch, to_delivering


async def indexes_of(store: Store, watch: Watch) -> dict[str, float]:
    """The time indexes that hold the watch, with its score in each."""
    found: dict[str, float] = {}
    for name, key in (
        ("due", store.keys.due("-")),
        ("early", store.keys.early("-")),
        ("deliveries", store.keys.deliveries()),
    ):
        score = await store.redis.zscore(key, watch.id)
        if score is not None:
            found[name] = score
    return found


def delivering_at(at_ms_from_now: int):  # type: ignore[no-untyped-def]
    def mutate(w: Watch) -> Watch:
        w.state = WatchState.DELIVERING
        w.event_id = "evt_1"
        w.next_attempt_at = now_utc() + timedelta(milliseconds=at_ms_from_now)
        return w

    return mutate


async def test_a_new_watch_waits_in_its_groups_due_set_only(store: Store) -> None:
    watch, _ = await create(store, make_watch())
    assert set(await indexes_of(store, watch)) == {"due", "early"}


def test_a_first_poll_is_scored_before_every_overdue_repoll_yet_keeps_its_time() -> None:
    now = wall_ms()
    assert priority_score(now) < now - 365 * 86_400_000
    assert due_ms_of(priority_score(now)) == now
    assert due_ms_of(now) == now
    assert now > PRIORITY_SHIFT_MS


async def test_a_watch_handed_to_delivery_moves_to_the_delivery_index_in_the_same_write(
    store: Store,
) -> None:
    watch, _ = await create(store, make_watch())
    updated = await store.watches.update(watch.id, delivering_at(0))
    assert updated is not None
    indexes = await indexes_of(store, watch)
    assert set(indexes) == {"deliveries"}
    assert indexes["deliveries"] == to_ms(updated.next_attempt_at)  # type: ignore[arg-type]


async def test_an_attempt_in_flight_is_scored_at_the_end_of_its_lease(store: Store) -> None:
    watch, _ = await create(store, make_watch())
    await store.watches.update(watch.id, delivering_at(0))
    lease_end = now_utc() + timedelta(seconds=40)

    def lease(w: Watch) -> Watch:
        w.delivery_in_flight_until = lease_end
        return w

    await store.watches.update(watch.id, lease)
    assert (await indexes_of(store, watch))["deliveries"] == to_ms(lease_end)


async def test_a_retry_is_scored_at_its_next_attempt(store: Store) -> None:
    watch, _ = await create(store, make_watch())
    await store.watches.update(watch.id, delivering_at(0))
    await store.watches.update(watch.id, delivering_at(30_000))
    score = (await indexes_of(store, watch))["deliveries"]
    assert wall_ms() + 25_000 < score <= wall_ms() + 30_000


async def test_a_finished_watch_is_in_no_index(store: Store) -> None:
    for final in (WatchState.DELIVERED, WatchState.FAILED, WatchState.CANCELLED):
        watch, _ = await create(store, make_watch(task_id=f"t-{final.value}"))
        await store.watches.update(watch.id, delivering_at(0))
        await store.watches.update(watch.id, become(final))
        assert await indexes_of(store, watch) == {}


async def test_a_watch_cancelled_while_polling_leaves_its_due_set(store: Store) -> None:
    watch, _ = await create(store, make_watch())
    await store.watches.update(watch.id, become(WatchState.CANCELLED))
    assert await indexes_of(store, watch) == {}


async def test_a_cancel_forgets_the_registration_in_the_same_write(store: Store) -> None:
    watch, _ = await create(store, make_watch())
    await store.watches.update(watch.id, become(WatchState.CANCELLED))
    again, created = await create(store, make_watch())
    assert created
    assert again.id != watch.id


async def test_an_attempt_settled_after_a_cancel_expires_with_the_watch(store: Store) -> None:
    store.watches.retention_s = 1
    watch, _ = await create(store, make_watch())
    await store.watches.update(watch.id, to_delivering("evt_1"))
    await store.watches.update(watch.id, become(WatchState.CANCELLED))
    # The attempt in flight during the cancel settles afterwards: its change is declined, its
    # attempt is still logged, and must go when the watch goes.
    await store.watches.update(watch.id, lambda w: None, attempt=attempt_of("evt_1"))
    assert await store.redis.pttl(store.keys.attempts(watch.id)) > 0
    await gone(store, watch)
    await asyncio.sleep(0.1)
    assert not await store.redis.exists(store.keys.attempts(watch.id))


async def test_no_attempt_log_is_created_for_a_watch_that_is_gone(store: Store) -> None:
    attempt: LoggedAttempt = attempt_of("evt_1")
    await store.events.log_attempt("wat_gone", attempt)
    assert not await store.redis.exists(store.keys.attempts("wat_gone"))


async def test_a_group_a_registration_joins_is_never_dropped(store: Store) -> None:
    # Dropping an empty group races registrations into it; checked and done at once, the group
    # stays known whenever a watch waits in it.
    for i in range(100):
        watch = make_watch(task_id=f"t-{i}")
        await asyncio.gather(store.schedule.drop_group_if_empty("-"), create(store, watch))
        assert "-" in await store.schedule.groups()
        await store.watches.update(watch.id, become(WatchState.CANCELLED))
        await store.schedule.drop_group_if_empty("-")
        assert "-" not in await store.schedule.groups()


async def test_a_push_during_a_poll_is_not_overwritten_by_the_rounds_reschedule(
    store: Store,
) -> None:
    watch, _ = await create(store, make_watch())
    now = wall_ms()
    [claimed] = await store.schedule.claim_due("-", now_ms=now, limit=10, lease_ms=60_000)
    await store.schedule.push_finished("push-1", watch.task_id, ["-"], 60)
    # The round's answer was from before the push: the task looked still processing.
    record = PollRecord(
        watch_id=claimed, kind="poll", status="processing", due_ms=now + 9000, early_ms=now + 6000
    )
    await store.schedule.record_polls("-", [record])
    due = await store.schedule.earliest_due_ms("-")
    assert due is not None
    assert due <= wall_ms()


async def test_the_sweep_keeps_up_past_one_batch_and_the_gauge_counts_only_existing_watches(
    store: Store,
) -> None:
    store.watches.retention_s = 1
    watches = [(await create(store, make_watch(task_id=f"t-{i}")))[0] for i in range(25)]
    for watch in watches:
        await finish(store, watch, WatchState.DELIVERED)
    assert (await store.retention.state_counts())["current:delivered"] == 25
    for watch in watches:
        await gone(store, watch)
    assert await store.retention.sweep_expired(now_ms=wall_ms() + 5_000, batch=10) == 25
    assert (await store.retention.state_counts())["current:delivered"] == 0
    assert await store.redis.zcard(store.keys.client_watches("a")) == 0


async def test_concurrent_sweeps_count_each_expired_watch_once(store: Store) -> None:
    store.watches.retention_s = 1
    watches = [(await create(store, make_watch(task_id=f"t-{i}")))[0] for i in range(20)]
    for watch in watches:
        await finish(store, watch, WatchState.FAILED)
    for watch in watches:
        await gone(store, watch)
    later = wall_ms() + 5_000
    counts = await asyncio.gather(
        *(store.retention.sweep_expired(now_ms=later, batch=3) for _ in range(4))
    )
    assert sum(counts) == 20
    assert (await store.retention.state_counts())["current:failed"] == 0


async def test_a_write_along_an_edge_the_watch_rules_do_not_have_is_refused(store: Store) -> None:
    watch, _ = await create(store, make_watch())
    with pytest.raises(IllegalTransition):
        await store.watches.update(watch.id, become(WatchState.DELIVERED))
    assert (await store.watches.get(watch.id)).state == WatchState.POLLING  # type: ignore[union-attr]
