"""arq worker settings: the job functions, timeouts, and the clients each process owns.

The start-up hook builds, once per process, the shared Redis pool, the Monite client (one httpx
client, one token shared through Redis, one rate budget shared by all workers) and the callback
client; the shutdown hook closes them. Jobs are short (a poll round is bounded to ~20 s, a delivery
attempt to ``DELIVERY_TIMEOUT_S``) because arq re-runs the job of a dead worker only after its
timeout: short jobs mean quick crash recovery.

arq has no reconnect: a Redis error in its main loop ends the worker. ``serve`` therefore runs
workers back to back, starting a fresh one once Redis answers again, so a Redis restart or
failover costs seconds instead of a dead worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any, Final

import uvloop
from arq import cron
from arq.worker import Function, Worker, func
from prometheus_client import start_http_server
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service import logs, metrics
from service.dispatch import Dispatcher
from service.egress import build_callback_client
from service.keys import Keys
from service.monite import MoniteClient, build_monite_http
from service.polling import ROUND_BUDGET_S, Poller
from service.queue import DELIVER, DELIVER_BATCH, POLL_ROUND, Queue, connect
from service.settings import Settings
from service.store import Store
from workers.jobs import deliver, deliver_batch, poll_round, reconcile

# A round's Monite calls may wait for the shared rate budget; leave room beyond its own budget.
POLL_ROUND_TIMEOUT_S: Final = ROUND_BUDGET_S + 40.0
# arq counts deferrals (Retry) as tries; a busy watch may defer a few times.
DELIVER_MAX_TRIES: Final = 20
RECONCILE_EVERY_S: Final = 5
# Pauses between worker restarts while Redis stays away: quick for a blip, then doubling.
RESTART_PAUSE_S: Final = (0.5, 8.0)

log = logging.getLogger("ocr_relay.worker")


async def startup(ctx: dict[str, Any]) -> None:
    """Build the per-process clients and services the jobs use."""
    settings: Settings = ctx["settings"]
    if settings.worker_metrics_port and not ctx.get("metrics_served"):
        # Several jobs share this process's registry; Prometheus scrapes each worker here.
        start_http_server(settings.worker_metrics_port, registry=metrics.REGISTRY)
        ctx["metrics_served"] = True
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
        dispatcher=Dispatcher(settings, store, queue, callbacks),
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    """Close what ``startup`` opened."""
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
        # Signals are handled by ``run_worker``, which must also stop between two workers.
        "handle_signals": False,
    }
    options.update(overrides)
    return Worker(**options)


async def close_worker(worker: Worker) -> None:
    """Cancel a worker's loop and jobs and release what it holds, also when Redis is gone.

    arq's own ``Worker.close`` needs Redis (and calls redis-py's deprecated ``close``).
    """
    running = [*worker.tasks.values(), *([worker.main_task] if worker.main_task else [])]
    await asyncio.gather(*map(_cancel, running))
    with contextlib.suppress(RedisError, OSError):
        await worker.pool.delete(worker.health_check_key)
    await shutdown(worker.ctx)
    await worker.pool.aclose(close_connection_pool=True)


async def _cancel(task: asyncio.Task[Any]) -> None:
    # redis-py < 6 (which arq needs) with a socket timeout swallows a cancellation that lands while
    # it reads a reply (redis-py issue 2551): a few in a hundred. Cancel again until it has ended.
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)


async def serve(settings: Settings, *, burst: bool = False) -> None:
    """Run a worker until cancelled (or, with ``burst``, until the queue is empty).

    A worker that loses Redis is closed and replaced by a fresh one after a pause; its jobs are
    safe meanwhile, as arq re-runs an interrupted job once its timeout has passed.
    """
    pause, longest = RESTART_PAUSE_S
    while True:
        worker = build_worker(settings, burst=burst)
        started = time.monotonic()
        run = asyncio.create_task(worker.async_run())
        try:
            # A cancellation of ``serve`` lands here, not in arq's loop, which might swallow it.
            await asyncio.wait({run})
            run.result()
            return
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if time.monotonic() - started > longest:
                pause = RESTART_PAUSE_S[0]  # it ran fine for a while: this is a new outage
            log.warning(
                "redis unreachable; restarting the worker",
                extra={"error": type(exc).__name__, "retry_in_s": pause},
            )
        finally:
            await close_worker(worker)
            await _cancel(run)
        await asyncio.sleep(pause)
        pause = min(pause * 2, longest)


async def _serve_until_signalled(settings: Settings, *, burst: bool) -> None:
    # SIGINT/SIGTERM cancel this task wherever it is: in a job, or in a pause between restarts.
    loop = asyncio.get_running_loop()
    this = asyncio.current_task()
    assert this is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, this.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serve(settings, burst=burst)
    log.info("worker stopped")


def run_worker(settings: Settings, *, burst: bool = False) -> None:
    """Run a worker process until SIGINT/SIGTERM (or, with ``burst``, until the queue is empty)."""
    logs.configure(settings.log_level)
    # A worker's CPU goes mostly to sockets (Redis, Monite, callbacks): uvloop's are cheaper.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_serve_until_signalled(settings, burst=burst))
