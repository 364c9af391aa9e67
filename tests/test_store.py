"""The Redis store: atomic registration, compare-and-set updates, leased due sets, listing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from service.clock import now_utc, to_ms, wall_ms
from service.domain.watch import SigningSecret, Watch, WatchState
from service.ids import new_id
from service.storage import Store
from service.storage.events import EventRecord, LoggedAttempt
from service.storage.idempotency import Claim, IdempotencyInProgress
from service.storage.schedule import PollRecord


def make_watch(client: str = "a", task_id: str = "t-1", **changes: object) -> Watch:
    now = now_utc()
    fields: dict[str, object] = {
        "id": new_id("wat"),
        "client": client,
        "task_id": task_id,
        "entity_id": None,
        "callback_url": "https://example.com/hook",
        "metadata_json": b"{}",
        "secrets": (SigningSecret(value="whsec_x"),),
        "created_at": now,
        "updated_at": now,
        "deadline_at": now + timedelta(hours=1),
    }
    fields.update(changes)
    return Watch(**fields)  # type: ignore[arg-type]


def bump(w: Watch) -> Watch:
    w.polls += 1
    return w


async def create(
    store: Store, watch: Watch, idem: str | None = None, *, late_ms: int = 0
) -> tuple[Watch, bool]:
    """Store ``watch`` with its first poll due now, or ``late_ms`` ago."""
    result = await store.watches.create_watch(
        watch,
        group="-",
        idempotency_key=None if idem is None else store.keys.idempotency(watch.client, idem),
        first_poll_at_ms=wall_ms() - late_ms,
    )
    return result.watch, result.created


async def test_a_new_watch_is_stored_due_and_recorded(store: Store) -> None:
    watch, created = await create(store, make_watch())
    assert created
    assert await store.watches.get(watch.id) == watch
    assert await store.schedule.earliest_due_ms("-") is not None
    assert [t.to for t in await store.watches.transitions(watch.id)] == [WatchState.POLLING]


async def test_the_same_registration_returns_the_existing_watch(store: Store) -> None:
    first, _ = await create(store, make_watch())
    again, created = await create(store, make_watch())
    assert not created
    assert again.id == first.id


async def test_an_idempotency_key_returns_the_watch_it_created(store: Store) -> None:
    first, _ = await create(store, make_watch(task_id="t-1"), idem="k1")
    other_task, created = await create(store, make_watch(task_id="t-2"), idem="k1")
    assert not created
    assert other_task.id == first.id


async def test_concurrent_identical_registrations_create_one_watch(store: Store) -> None:
    results = await asyncio.gather(*(create(store, make_watch()) for _ in range(20)))
    assert sum(created for _, created in results) == 1
    assert len({w.id for w, _ in results}) == 1
    assert await store.schedule.due_count("-") == 1


async def test_concurrent_updates_are_never_lost(store: Store) -> None:
    watch, _ = await create(store, make_watch())

    await asyncio.gather(*(store.watches.update(watch.id, bump) for _ in range(10)))
    stored = await store.watches.get(watch.id)
    assert stored is not None
    assert stored.polls == 10
    assert stored.version == 10


async def test_only_one_of_two_racing_transitions_wins(store: Store) -> None:
    watch, _ = await create(store, make_watch())

    def to(state: WatchState):  # type: ignore[no-untyped-def]
        def mutate(w: Watch) -> Watch | None:
            if w.state != WatchState.POLLING:
                return None
            w.state = state
            return w

        return mutate

    results = await asyncio.gather(
        store.watches.update(watch.id, to(WatchState.DELIVERING)),
        store.watches.update(watch.id, to(WatchState.CANCELLED)),
    )
    assert sum(r is not None for r in results) == 1
    assert len(await store.watches.transitions(watch.id)) == 2


def to_delivering(event_id: str):  # type: ignore[no-untyped-def]
    def mutate(w: Watch) -> Watch | None:
        if w.state != WatchState.POLLING:
            return None
        w.state = WatchState.DELIVERING
        w.event_id = event_id
        return w

    return mutate


def event_of(watch: Watch) -> EventRecord:
    return EventRecord(
        id=new_id("evt"),
        watch_id=watch.id,
        type="invoice.recognized",
        body=b"{}",
        created_at=now_utc(),
    )


def attempt_of(event_id: str) -> LoggedAttempt:
    return LoggedAttempt(
        event_id=event_id,
        series=1,
        attempt=1,
        at=now_utc(),
        status_code=200,
        latency_ms=1.0,
        outcome="delivered",
    )


async def test_an_update_from_a_stale_copy_rereads_and_loses_nothing(store: Store) -> None:
    watch, _ = await create(store, make_watch())
    await store.watches.update(watch.id, bump)

    updated = await store.watches.update(
        watch.id, bump, current=watch
    )  # watch is one version behind
    assert updated is not None
    stored = await store.watches.get(watch.id)
    assert stored is not None
    assert (stored.polls, stored.version) == (2, 2)


async def test_an_event_is_stored_with_the_change_that_makes_it_the_watchs(store: Store) -> None:
    watch, _ = await create(store, make_watch())
    event = event_of(watch)

    await store.watches.update(watch.id, to_delivering(event.id), current=watch, event=event)
    assert await store.events.get(event.id) == event


async def test_an_event_is_not_stored_when_the_change_is_declined(store: Store) -> None:
    watch, _ = await create(store, make_watch())
    await store.watches.update(watch.id, to_delivering("evt_first"))
    event = event_of(watch)

    assert await store.watches.update(watch.id, to_delivering(event.id), event=event) is None
    assert await store.events.get(event.id) is None


async def test_an_attempt_is_logged_once_even_when_its_change_is_retried_or_declined(
    store: Store,
) -> None:
    watch, _ = await create(store, make_watch())
    await store.watches.update(watch.id, bump)
    first, second = attempt_of("evt_1"), attempt_of("evt_1")

    await store.watches.update(watch.id, bump, current=watch, attempt=first)  # stale: retried
    await store.watches.update(watch.id, lambda w: None, attempt=second)  # declined
    assert await store.events.attempts(watch.id) == [first, second]


async def test_leaving_polling_removes_the_watch_from_the_due_set(store: Store) -> None:
    watch, _ = await create(store, make_watch())

    def cancel(w: Watch) -> Watch:
        w.state = WatchState.CANCELLED
        return w

    await store.watches.update(watch.id, cancel)
    assert await store.schedule.due_count("-") == 0


async def test_claimed_watches_are_leased_and_not_claimed_twice(store: Store) -> None:
    for n in range(3):
        await create(store, make_watch(task_id=f"t-{n}"))
    now = wall_ms() + 10
    first = await store.schedule.claim_due("-", now_ms=now, limit=2, lease_ms=60_000)
    second = await store.schedule.claim_due("-", now_ms=now, limit=2, lease_ms=60_000)
    assert len(first) == 2
    assert len(second) == 1
    assert not set(first) & set(second)
    assert await store.schedule.claim_due("-", now_ms=now, limit=2, lease_ms=1) == []


async def test_a_request_is_filled_with_watches_due_soon(store: Store) -> None:
    due_now, _ = await create(store, make_watch(task_id="now"))
    soon, _ = await create(store, make_watch(task_id="soon"))
    later, _ = await create(store, make_watch(task_id="later"))
    now = wall_ms()
    await store.schedule.reschedule(
        "-",
        {
            due_now.id: (now - 1, now - 1),
            soon.id: (now + 1000, now - 500),  # not due, but its early time has come
            later.id: (now + 60_000, now + 40_000),
        },
    )
    claimed = await store.schedule.claim_due("-", now_ms=now, limit=10, lease_ms=5000)
    assert set(claimed) == {due_now.id, soon.id}


async def test_early_watches_alone_are_never_claimed(store: Store) -> None:
    soon, _ = await create(store, make_watch(task_id="soon"))
    now = wall_ms()
    await store.schedule.reschedule("-", {soon.id: (now + 1000, now - 500)})
    assert await store.schedule.claim_due("-", now_ms=now, limit=10, lease_ms=5000) == []


async def test_listing_pages_newest_first_without_gaps(store: Store) -> None:
    created = []
    for n in range(7):
        watch, _ = await create(store, make_watch(task_id=f"t-{n}"))
        created.append(watch)
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.watches.list_watches("a", cursor=cursor, limit=3)
        seen.extend(w.id for w in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    newest_first = sorted(created, key=lambda w: (to_ms(w.created_at), w.id), reverse=True)
    assert seen == [w.id for w in newest_first]


async def test_listing_filters_by_state_and_task(store: Store) -> None:
    keep, _ = await create(store, make_watch(task_id="x"))
    await create(store, make_watch(task_id="y"))
    page = await store.watches.list_watches("a", task_id="x")
    assert [w.id for w in page.items] == [keep.id]
    assert (await store.watches.list_watches("a", state=WatchState.DELIVERED)).items == []


async def test_listing_shows_only_the_clients_own_watches(store: Store) -> None:
    await create(store, make_watch(client="a"))
    assert (await store.watches.list_watches("b")).items == []


async def test_a_finished_watch_expires_after_the_retention_period(store: Store) -> None:
    store.watches.retention_s = 60
    watch, _ = await create(store, make_watch())

    def finish(w: Watch) -> Watch:
        w.state = WatchState.CANCELLED
        return w

    await store.watches.update(watch.id, finish)
    ttl = await store.redis.ttl(store.keys.watch(watch.id))
    assert 0 < ttl <= 60
    assert 0 < await store.redis.ttl(store.keys.watch_transitions(watch.id)) <= 60


def become(state: WatchState) -> Callable[[Watch], Watch]:
    def mutate(w: Watch) -> Watch:
        w.state = state
        return w

    return mutate


async def finish(store: Store, watch: Watch, state: WatchState) -> None:
    """Take a polling watch to ``state`` the way the service does: through ``delivering``."""
    await store.watches.update(watch.id, become(WatchState.DELIVERING))
    await store.watches.update(watch.id, become(state))


async def keys_of(store: Store, watch: Watch) -> list[str]:
    """Every key of the store that still names the watch, its task or its registration."""
    prefix = store.keys.prefix
    found = [k.decode() async for k in store.redis.scan_iter(match=store.keys.pattern())]
    named = [
        k
        for k in found
        if (rest := k.removeprefix(prefix)).startswith("dedupe:")
        or watch.id in rest
        or rest.startswith(f"task:{watch.task_id}:")
    ]
    listed = await store.redis.zrange(store.keys.client_watches(watch.client), 0, -1)
    return named + [m.decode() for m in listed]


async def gone(store: Store, watch: Watch) -> None:
    """Wait until the watch's own records have expired (their TTL is whole seconds)."""
    for _ in range(60):
        if not await store.redis.exists(store.keys.watch(watch.id)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the watch did not expire")


async def test_a_finished_watch_leaves_nothing_behind_once_its_retention_is_over(
    store: Store,
) -> None:
    store.watches.retention_s = 1
    watch, _ = await create(store, make_watch())
    await finish(store, watch, WatchState.FAILED)
    assert await keys_of(store, watch) != []  # kept during its retention
    await gone(store, watch)
    assert await store.retention.sweep_expired(now_ms=wall_ms()) == 1
    assert await keys_of(store, watch) == []


async def test_a_watch_redelivered_during_its_retention_keeps_everything(store: Store) -> None:
    store.watches.retention_s = 1
    watch, _ = await create(store, make_watch())
    await finish(store, watch, WatchState.DELIVERED)
    await store.watches.update(watch.id, become(WatchState.DELIVERING))
    await asyncio.sleep(1.2)
    assert await store.retention.sweep_expired(now_ms=wall_ms()) == 0
    assert [w.id for w in (await store.watches.list_watches("a")).items] == [watch.id]
    dedupe = store.keys.watch_dedupe(watch.client, watch.task_id, watch.callback_url)
    assert await store.redis.ttl(dedupe) == -1  # registering it again still finds it


async def test_the_sweep_leaves_a_watch_that_is_still_retained_for_later(store: Store) -> None:
    store.watches.retention_s = 60
    watch, _ = await create(store, make_watch())
    await finish(store, watch, WatchState.FAILED)
    # Its expiry moved since it was noted (here: the sweep runs "late"): looked at again then.
    later = wall_ms() + 120_000
    assert await store.retention.sweep_expired(now_ms=later) == 0
    [(_, score)] = await store.redis.zrange(store.keys.expiring(), 0, -1, withscores=True)
    assert later < score <= later + 60_000
    assert [w.id for w in (await store.watches.list_watches("a")).items] == [watch.id]


async def test_a_finished_watch_no_longer_receives_pushes_for_its_task(store: Store) -> None:
    watch, _ = await create(store, make_watch())
    await finish(store, watch, WatchState.DELIVERED)
    assert await store.redis.smembers(store.keys.task_watches(watch.task_id)) == set()


async def test_an_active_watch_never_expires(store: Store) -> None:
    watch, _ = await create(store, make_watch())
    assert await store.redis.ttl(store.keys.watch(watch.id)) == -1


async def test_state_counts_follow_transitions(store: Store) -> None:
    first, _ = await create(store, make_watch(task_id="a"))
    await create(store, make_watch(task_id="b"))

    def deliver(w: Watch) -> Watch:
        w.state = WatchState.DELIVERING
        return w

    await store.watches.update(first.id, deliver)
    counts = await store.retention.state_counts()
    assert counts["current:polling"] == 1
    assert counts["current:delivering"] == 1
    assert counts["entered:polling"] == 2


async def test_recorded_polls_count_and_reschedule_a_whole_batch(store: Store) -> None:
    first, _ = await create(store, make_watch(task_id="a"))
    second, _ = await create(store, make_watch(task_id="b"))
    now = wall_ms()
    await store.schedule.claim_due("-", now_ms=now, limit=10, lease_ms=60_000)
    await store.schedule.record_polls(
        "-",
        [
            PollRecord(
                watch_id=first.id,
                kind="poll",
                status="processing",
                due_ms=now + 9000,
                early_ms=now + 6000,
            ),
            PollRecord(
                watch_id=second.id,
                kind="error",
                status=None,
                due_ms=now + 2000,
                early_ms=now + 2000,
            ),
        ],
    )
    polled, failed = await store.watches.get_many([first.id, second.id])
    assert polled is not None
    assert failed is not None
    assert (polled.polls, polled.last_monite_status, polled.poll_errors) == (1, "processing", 0)
    assert (failed.polls, failed.poll_errors) == (0, 1)
    assert await store.schedule.earliest_due_ms("-") == now + 2000


async def test_a_recorded_poll_does_not_revive_a_cancelled_watch(store: Store) -> None:
    watch, _ = await create(store, make_watch())

    def cancel(w: Watch) -> Watch:
        w.state = WatchState.CANCELLED
        return w

    await store.watches.update(watch.id, cancel)
    now = wall_ms()
    await store.schedule.record_polls(
        "-",
        [PollRecord(watch_id=watch.id, kind="poll", status="processing", due_ms=now, early_ms=now)],
    )
    stored = await store.watches.get(watch.id)
    assert stored is not None
    assert stored.polls == 0
    assert await store.schedule.due_count("-") == 0


async def test_one_round_at_a_time_holds_a_groups_lock(store: Store) -> None:
    assert await store.schedule.lock_round("g", "first", 10_000)
    assert not await store.schedule.lock_round("g", "second", 10_000)


async def test_only_the_holder_extends_or_releases_a_round_lock(store: Store) -> None:
    await store.schedule.lock_round("g", "first", 10_000)
    assert not await store.schedule.extend_round("g", "second", 10_000)
    await store.schedule.unlock_round("g", "second")
    assert not await store.schedule.lock_round("g", "second", 10_000)

    assert await store.schedule.extend_round("g", "first", 10_000)
    await store.schedule.unlock_round("g", "first")
    assert await store.schedule.lock_round("g", "second", 10_000)


async def test_a_polled_group_needs_no_round_from_the_safety_net(store: Store) -> None:
    await create(store, make_watch())
    await store.schedule.lock_round("-", "running", 10_000)
    assert await store.schedule.earliest_due_ms("-", unless_polled=True) is None
    assert await store.schedule.earliest_due_ms("-") is not None


async def test_an_idempotency_key_of_an_expired_watch_is_taken_over_once(store: Store) -> None:
    key = store.keys.idempotency("a", "req-1")
    await store.redis.set(key, "wat_expired0000000")  # its watch is gone
    assert await store.idempotency.claim(key, hold_s=60) == Claim()
    with pytest.raises(IdempotencyInProgress):  # a concurrent retry finds it held now
        await store.idempotency.claim(key, hold_s=60)


async def test_a_released_idempotency_key_can_be_claimed_again(store: Store) -> None:
    key = store.keys.idempotency("a", "req-2")
    assert await store.idempotency.claim(key, hold_s=60) == Claim()
    await store.idempotency.release(key)
    assert await store.idempotency.claim(key, hold_s=60) == Claim()


@pytest.mark.parametrize(("printed", "filed"), [("RE-2026/0815", True), ("- / -", False)])
async def test_a_recognized_event_files_its_watch_under_the_document_number(
    store: Store, printed: str, filed: bool
) -> None:
    watch, _ = await create(store, make_watch())
    event = event_of(watch)
    await store.watches.update(
        watch.id, to_delivering(event.id), event=event, document_number=printed
    )
    found = await store.activity.find("number", "re 2026 0815")
    assert found == ([watch.id] if filed else [])
    # A number of punctuation alone files nothing (not even under the empty text).
    assert await store.redis.exists(store.keys.lookup("number", "")) == 0
