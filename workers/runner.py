"""Running workers: restarts when Redis drops out, a graceful drain on SIGTERM.

arq has no reconnect: a Redis error in its main loop ends the worker. ``serve`` therefore runs
workers back to back, starting a fresh one once Redis serves again, so a Redis restart,
failover or full memory costs seconds instead of a dead worker process.

arq's own signal handling cancels running jobs at once; a cancelled delivery attempt holds its
watch's lease and may have reached the receiver unrecorded. On SIGTERM (a deploy, a scale-in) a
worker here takes no new job and gives running ones ``DRAIN_S`` to finish; a second signal stops
it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any, Final

import uvloop
from arq.worker import Worker
from prometheus_client import start_http_server
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service import logs, metrics
from service.polling import ROUND_BUDGET_S
from service.settings import Settings
from workers.worker import build_worker, shutdown

# Pauses between worker restarts while Redis stays away: quick for a blip, then doubling.
RESTART_PAUSE_S: Final = (0.5, 8.0)
# Time running jobs get to finish after SIGTERM: a poll round's budget and a few seconds (a
# delivery attempt is shorter). docker-compose.yml's stop_grace_period must exceed it.
DRAIN_S: Final = ROUND_BUDGET_S + 5.0

# What ends arq's loop when Redis cannot serve: out of reach, a read-only replica (a failover
# under way behind a fixed address) or full; each passes, so the worker waits and starts again.
# A connection lost inside arq's WATCH (its cron enqueue) surfaces as WatchError, not as
# ConnectionError: it means the same.
_REDIS_OUT_OF_SERVICE: Final = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
    WatchError,
)

log = logging.getLogger("ocr_relay.worker")


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


async def serve(
    settings: Settings,
    *,
    burst: bool = False,
    stop: asyncio.Event | None = None,
    drain_s: float = DRAIN_S,
) -> None:
    """Run a worker until ``stop`` is set or this is cancelled (with ``burst``: queue empty).

    Once ``stop`` is set the worker takes no new job, and its running jobs get ``drain_s`` to
    finish before they are cancelled. A worker that loses Redis is closed and replaced by a
    fresh one after a pause; its jobs are safe meanwhile, as arq re-runs an interrupted job once
    its timeout has passed.
    """
    if stop is None:
        stop = asyncio.Event()
    pause, longest = RESTART_PAUSE_S
    while True:
        worker = build_worker(settings, burst=burst)
        started = time.monotonic()
        run = asyncio.create_task(worker.async_run())
        stopping = asyncio.create_task(stop.wait())
        try:
            # A cancellation of ``serve`` lands here, not in arq's loop, which might swallow it.
            await asyncio.wait({run, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if run.done():
                run.result()
            else:
                await _drain(worker, drain_s)
            return
        except _REDIS_OUT_OF_SERVICE as exc:
            if time.monotonic() - started > longest:
                pause = RESTART_PAUSE_S[0]  # it ran fine for a while: this is a new outage
            metrics.WORKER_RESTARTS.inc()
            log.warning(
                "redis out of service; restarting the worker",
                extra={"error": type(exc).__name__, "retry_in_s": pause},
            )
        finally:
            stopping.cancel()
            await close_worker(worker)
            await _cancel(run)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(pause):
                await stop.wait()
                return
        pause = min(pause * 2, longest)


async def _drain(worker: Worker, within_s: float) -> None:
    """Take no new job; give the running ones ``within_s`` (``close_worker`` cancels the rest)."""
    worker.allow_pick_jobs = False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within_s):
            # Again until none is left: arq may have been starting a job it picked just before.
            while running := [job for job in worker.tasks.values() if not job.done()]:
                await asyncio.wait(running)
    unfinished = sum(not job.done() for job in worker.tasks.values())
    log.info("worker drained", extra={"jobs_cancelled": unfinished})


async def serve_until_signalled(settings: Settings, *, burst: bool = False) -> None:
    """``serve`` until SIGINT/SIGTERM: the first drains the worker, wherever it is (in a job, in a
    pause between restarts); a second one cancels everything at once."""
    loop = asyncio.get_running_loop()
    this = asyncio.current_task()
    assert this is not None
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            this.cancel()
        stop.set()

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await serve(settings, burst=burst, stop=stop)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    log.info("worker stopped")


def run_worker(settings: Settings, *, burst: bool = False) -> None:
    """Run a worker process until SIGINT/SIGTERM (or, with ``burst``, until the queue is empty)."""
    logs.configure(settings.log_level)
    if settings.worker_metrics_port:
        # Once per process, not per worker: a worker started again after a Redis outage would
        # find the port taken. Its jobs all count on this process's registry.
        start_http_server(settings.worker_metrics_port, registry=metrics.REGISTRY)
    # A worker's CPU goes mostly to sockets (Redis, Monite, callbacks): uvloop's are cheaper.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve_until_signalled(settings, burst=burst))
