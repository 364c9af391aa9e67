"""``ocr-relay hash-key`` and ``ocr-relay inspect``."""

from __future__ import annotations

import asyncio
import hashlib

import msgspec
import pytest

from service.auth import authenticate
from service.cli import main
from service.domain.watch import WatchState
from service.settings import Settings, parse_api_keys
from service.storage import Store
from tests.conftest import TEST_REDIS_URL
from tests.test_store import become, create, event_of, make_watch, to_delivering


def test_hash_key_prints_a_key_and_the_entry_that_accepts_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["hash-key", "--client", "billing"]) == 0
    out = capsys.readouterr().out.splitlines()
    key = out[0].rsplit(" ", 1)[1]
    entry = out[1].rsplit(" ", 1)[1]
    assert entry == f"billing:sha256:{hashlib.sha256(key.encode()).hexdigest()}"
    assert authenticate(parse_api_keys(entry), key) == "billing"


def test_two_generated_keys_differ(capsys: pytest.CaptureFixture[str]) -> None:
    main(["hash-key"])
    main(["hash-key"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] != lines[2]


async def test_inspect_prints_the_watch_and_its_history(
    store: Store,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    watch, _ = await create(store, make_watch())
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setenv("REDIS_KEY_PREFIX", settings.key_prefix)
    # `inspect` runs its own event loop, so it cannot run on the test's.
    code = await asyncio.to_thread(main, ["inspect", watch.id])
    assert code == 0
    shown = msgspec.json.decode(capsys.readouterr().out)
    assert shown["watch"]["id"] == watch.id
    assert shown["watch"]["transitions"][0]["to"] == "polling"
    assert shown["deliveries"] == []


def test_inspect_of_an_unknown_watch_is_one_line_and_exit_1(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setenv("REDIS_KEY_PREFIX", settings.key_prefix)
    assert main(["inspect", "wat_missing"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "wat_missing" in err


def test_inspect_without_redis_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["inspect", "wat_x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot read Redis" in err


def test_inspect_without_redis_does_not_print_the_redis_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://ops:s3cret-pw@127.0.0.1:1/0")
    assert main(["inspect", "wat_x"]) == 1
    err = capsys.readouterr().err
    assert "s3cret-pw" not in err
    assert "redis://***@127.0.0.1:1/0" in err


@pytest.fixture
def inspect_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """``inspect`` reads this test's Redis slice."""
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setenv("REDIS_KEY_PREFIX", settings.key_prefix)


@pytest.mark.usefixtures("inspect_env")
async def test_inspect_by_event_prints_the_watch_the_event_belongs_to(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    watch, _ = await create(store, make_watch())
    event = event_of(watch)
    await store.watches.update(watch.id, to_delivering(event.id), event=event)
    assert await asyncio.to_thread(main, ["inspect", "--event", event.id]) == 0
    shown = msgspec.json.decode(capsys.readouterr().out)
    assert (shown["watch"]["id"], shown["watch"]["event_id"]) == (watch.id, event.id)


@pytest.mark.usefixtures("inspect_env")
async def test_inspect_by_task_lists_its_live_and_finished_watches_newest_first(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    finished, _ = await create(store, make_watch(client="a", task_id="t-7"))
    await store.watches.update(finished.id, become(WatchState.CANCELLED))
    live, _ = await create(store, make_watch(client="b", task_id="t-7"))
    await create(store, make_watch(client="a", task_id="t-other"))
    assert await asyncio.to_thread(main, ["inspect", "--task", "t-7"]) == 0
    shown = msgspec.json.decode(capsys.readouterr().out)
    assert [i["watch"]["id"] for i in shown] == [live.id, finished.id]


@pytest.mark.usefixtures("inspect_env")
def test_inspect_of_an_unknown_task_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["inspect", "--task", "t-none"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "t-none" in err


def test_inspect_takes_one_of_watch_task_or_event(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["inspect", "wat_x", "--task", "t-1"])
    assert exited.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
