"""arq worker settings: the job functions, timeouts, and the clients each process owns.

The start-up hook builds, once per process, the shared Redis pool, the Monite client (one httpx
client, one token shared through Redis, one rate budget shared by all workers) and the callback
client; the shutdown hook closes them. Jobs are short (a poll round is bounded to ~20 s, a delivery
attempt to ``DELIVERY_TIMEOUT_S``) because arq re-runs the job of a dead worker only after its
timeout: short jobs mean quick crash recovery. ``workers.runner`` runs them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from arq import cron
from arq.worker import Function, Worker, func
from redis.exceptions import RedisError

from service.callbacks.egress import build_callback_client
from service.callbacks.series import Dispatcher
from service.monite import MoniteClient, build_monite_http
from service.polling import ROUND_BUDGET_S, Poller
from service.queue import DELIVER, DELIVER_BATCH, POLL_ROUND, Queue, connect
from service.reconcile import Reconciler
from service.settings import Settings
from service.storage import Store
from service.storage.activity import HEARTBEAT_S, Activity, worker_name
from service.storage.keys import Keys
from workers.jobs import deliver, deliver_batch, poll_round, reconcile

# A round's Monite calls may wait for the shared rate budget; leave room beyond its own budget.
POLL_ROUND_TIMEOUT_S: Final = ROUND_BUDGET_S + 40.0
# arq counts deferrals (Retry) as tries; a busy watch may defer a few times.
DELIVER_MAX_TRIES: Final = 20
RECONCILE_EVERY_S: Final = 5

log = logging.getLogger("ocr_relay.worker")


async def startup(ctx: dict[str, Any]) -> None:
    """Build the clients and services the jobs of one worker use."""
    settings: Settings = ctx["settings"]
    keys = Keys(settings.key_prefix)
    redis = ctx["redis"]
    store = Store(redis, keys, settings.watch_retention_s)
    queue = Queue(redis, keys)
    http = build_monite_http(settings)
    callbacks = build_callback_client(settings)
    monite = MoniteClient(settings, redis, http, keys)
    ctx.update(
        store=store,
        queue=queue,
        monite_http=http,
        callbacks=callbacks,
        poller=Poller(settings, store, queue, monite),
        reconciler=Reconciler(store, queue),
        dispatcher=Dispatcher(settings, store, queue, callbacks),
        heartbeat=asyncio.create_task(_beat(store.activity)),
    )
    log.info("worker ready")


async def _beat(activity: Activity) -> None:
    """Tell the console this worker is alive, until the worker stops."""
    name = worker_name()
    while True:
        try:
            await activity.beat(name)
        except RedisError as exc:  # an outage: the runner restarts the worker if it lasts
            log.warning("heartbeat not recorded", extra={"error": type(exc).__name__})
        await asyncio.sleep(HEARTBEAT_S)


async def shutdown(ctx: dict[str, Any]) -> None:
    """Close what ``startup`` opened."""
    if "heartbeat" in ctx:
        ctx["heartbeat"].cancel()
    if "monite_http" in ctx:
        await ctx["monite_http"].aclose()
    if "callbacks" in ctx:
        await ctx["callbacks"].close()


def functions(settings: Settings) -> list[Function]:
    """The job functions with their limits."""
    # A batch's attempts run concurrently: its job lasts as long as its slowest attempt.
    deliveries = ((deliver, DELIVER), (deliver_batch, DELIVER_BATCH))
    return [
        func(poll_round, name=POLL_ROUND, timeout=POLL_ROUND_TIMEOUT_S, keep_result=0, max_tries=5),
        *(
            func(
                job,
                name=name,
                timeout=settings.delivery_timeout_s + 30.0,
                keep_result=0,
                max_tries=DELIVER_MAX_TRIES,
            )
            for job, name in deliveries
        ),
    ]


def build_worker(settings: Settings, *, burst: bool = False, **overrides: Any) -> Worker:
    """An arq worker bound to ``settings`` (tests pass ``burst=True`` and overrides)."""
    keys = Keys(settings.key_prefix)
    options: dict[str, Any] = {
        "functions": functions(settings),
        "cron_jobs": [
            cron(
                reconcile,
                name=f"{keys.prefix}reconcile",
                second=set(range(0, 60, RECONCILE_EVERY_S)),
                run_at_startup=True,
                keep_result=0,
                timeout=30,
            )
        ],
        "redis_pool": connect(settings),
        "queue_name": keys.queue(),
        "health_check_key": keys.health_check(),
        "health_check_interval": 10,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings},
        "burst": burst,
        "max_jobs": 50,
        # How often an idle worker looks for due jobs: the push fast path's latency floor.
        "poll_delay": 0.02,
        "keep_result": 0,
        # Signals are handled by ``workers.runner``, which must also stop between two workers.
        "handle_signals": False,
    }
    options.update(overrides)
    return Worker(**options)
