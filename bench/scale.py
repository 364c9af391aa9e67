"""How many concurrent watches stay ≤ 5 s fresh within Monite's 30 req/s: ocr-relay vs per-task.

Run: ``.venv/bin/python bench/scale.py --sizes 1000,5000,15000`` (``--help`` for the knobs).

For each size N, two runs against a fresh simulator enforcing ``SIM_RATE_LIMIT`` (30 req/s):

* **ocr-relay**: a private ``redis-server``, the simulator, the API and ``--workers`` workers as
  real processes on loopback; N tasks spread over ``--entities`` entities, N watches registered
  through the API (many requests in flight), callbacks to a receiver in this process. Tasks are
  created chunk by chunk just before their watches, timed to finish 5-20 s (``--durations``)
  after the *last* registration: all N watches are in flight at once, then the tasks finish
  within 15 s.
  With ``--push`` the simulator also sends Monite's ``ocr_task.finished`` to the API's push
  intake for every task (polling stays on as the safety net).
* **per-task**: the same N tasks, timed the same way, polled one by one with
  ``GET /ocr_tasks/{id}`` every ``--interval`` seconds by a minimal poller in this process, paced
  to the same request budget (``--budget``) and given the same time.

Freshness is the time from a task's completion in the simulator (its ``updated_at``) to the
callback's arrival (ocr-relay: signed, normalized event at the receiver) or to the poll answer that
showed it finished (per-task: no normalization, no delivery, which flatters the baseline). A watch
whose event has not arrived when the run ends (``--settle`` seconds after the last task finished)
is not fresh. Requests and 429s come from the simulator's ``/_sim/counters``. The CPU seconds each
process used tell which one was the bottleneck on a small machine.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import resource
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

import httpx
import msgspec
from _stack import (
    Receiver,
    Stack,
    create_tasks,
    entity_ids,
    monite_totals,
    percentile,
    register_watches,
    run_main,
    table,
    wait_for,
    worker_metrics,
)

from service.simulator import SimulatorConfig, SimulatorControl
from service.simulator.config import parse_duration_range

FRESH_S: Final = 5.0
WEBHOOK_SECRET: Final = "whsec_bench-scale-push"  # noqa: S105 - a throwaway secret of this run
# Registrations per second assumed until the first chunk is measured.
FIRST_GUESS_PER_S: Final = 150.0


class RunResult(msgspec.Struct, kw_only=True):
    """One run's numbers: what arrived how late, what it cost in Monite requests."""

    mode: str
    watches: int
    lags_s: list[float]
    late_registrations: int
    """Tasks that finished before their watch was registered (left out of the freshness counts)."""
    requests: int
    throttled: int
    peak_per_second: int
    setup_s: float
    cpu_s: dict[str, float]
    metrics: dict[str, float] = msgspec.field(default_factory=dict)
    """The workers' Prometheus samples at the end (ocr-relay runs only)."""

    @property
    def measured(self) -> int:
        """Watches whose freshness counts: all but those registered after their task finished."""
        return self.watches - self.late_registrations

    @property
    def fresh(self) -> int:
        """Watches whose event arrived within ``FRESH_S`` of the task's completion."""
        return sum(1 for lag in self.lags_s if lag <= FRESH_S)

    def row(self) -> list[str]:
        """This run as a row of the results table."""
        completed = len(self.lags_s)
        return [
            f"{self.watches:,}",
            self.mode,
            f"{self.fresh:,} ({100 * self.fresh / max(1, self.measured):.1f} %)",
            f"{completed:,}",
            f"{percentile(self.lags_s, 0.5):.2f}",
            f"{percentile(self.lags_s, 0.99):.2f}",
            f"{self.requests:,}",
            f"{self.requests / max(1, completed):.3f}",
            f"{self.throttled:,}",
            f"{self.peak_per_second}",
            f"{self.late_registrations:,}",
            f"{self.setup_s:.0f}",
            " ".join(f"{name} {cpu:.0f}" for name, cpu in self.cpu_s.items()),
        ]

    def inside_row(self) -> list[str]:
        """Where ocr-relay's time went, from its workers' metrics."""
        m = self.metrics

        def ratio(num: str, den: str) -> float:
            return m.get(num, 0.0) / max(1.0, m.get(den, 0.0))

        lag, batch = "ocr_relay_event_lag_seconds", "ocr_relay_monite_batch_size"
        wait = 'ocr_relay_monite_limiter_wait_seconds_{}{{priority="low"}}'
        fresh = ratio(lag + '_bucket{le="5.0"}', lag + "_count{}")
        processing = m.get('ocr_relay_polls_total{result="processing"}', 0.0)
        return [
            f"{self.watches:,}",
            f"{100 * fresh:.1f} %",
            f"{ratio(lag + '_sum{}', lag + '_count{}'):.2f}",
            f"{processing:,.0f}",
            f"{ratio(batch + '_sum{}', batch + '_count{}'):.1f}",
            f"{ratio(wait.format('sum'), wait.format('count')):.3f}",
        ]


INSIDE_HEADER: Final = [
    "watches",
    "events stored ≤ 5 s after completion",
    "mean s to stored event",
    "polls answered 'processing'",
    "mean ids per list request",
    "mean limiter wait (re-polls) s",
]
HEADER: Final = [
    "watches",
    "polling",
    "≤ 5 s fresh",
    "completed",
    "p50 s",
    "p99 s",
    "Monite requests",
    "per completed",
    "429s",
    "peak req/s",
    "late reg.",
    "setup s",
    "CPU s",
]


class _TaskHead(msgspec.Struct):
    status: str
    updated_at: datetime


class PerTaskPoller:
    """The baseline: each task alone, ``GET /ocr_tasks/{id}`` every ``interval_s``.

    Requests are paced to ``rate`` per second; a 429 re-queues the task after ``Retry-After``.
    """

    def __init__(
        self, sim: SimulatorControl, http: httpx.AsyncClient, token: str, rate: float
    ) -> None:
        self._sim = sim
        self._http = http
        self._token = token
        self._gap_s = 1 / rate
        self._due: list[tuple[float, str, str]] = []
        self._in_flight = 0
        self.lags_s: dict[str, float] = {}

    async def run(
        self, tasks: Sequence[tuple[str, str]], *, interval_s: float, until: float
    ) -> None:
        """Poll ``(task_id, entity_id)`` pairs until all finished or ``until`` (monotonic)."""
        now = time.monotonic()
        self._due = [(now, task_id, entity) for task_id, entity in tasks]
        heapq.heapify(self._due)
        next_slot = now
        async with asyncio.TaskGroup() as group:
            while (self._due or self._in_flight) and time.monotonic() < until:
                now = time.monotonic()
                at = max(self._due[0][0], next_slot) if self._due else now + 0.01
                if at > now:
                    await asyncio.sleep(min(at, until) - now)
                    continue
                _, task_id, entity = heapq.heappop(self._due)
                # No saving up: a slot not used when it came is gone, as in a token bucket of 1.
                next_slot = max(next_slot, now - self._gap_s) + self._gap_s
                self._in_flight += 1
                group.create_task(self._poll(task_id, entity, interval_s))

    async def _poll(self, task_id: str, entity: str, interval_s: float) -> None:
        try:
            answer = await self._http.get(
                f"{self._sim.base_url}/ocr_tasks/{task_id}",
                headers=self._sim.headers(self._token, entity),
            )
        finally:
            self._in_flight -= 1
        seen = time.time()
        again = time.monotonic() + interval_s
        if answer.status_code == 200:
            head = msgspec.json.decode(answer.content, type=_TaskHead)
            if head.status != "processing":
                self.lags_s[task_id] = seen - head.updated_at.timestamp()
                return
        elif answer.status_code == 429:
            again = time.monotonic() + float(answer.headers.get("retry-after", "1"))
        heapq.heappush(self._due, (again, task_id, entity))


def _sim_env(args: argparse.Namespace, push_url: str | None = None) -> dict[str, str]:
    env = {
        "SIM_RATE_LIMIT": str(args.sim_rate_limit),
        "SIM_OCR_ERROR_RATE": "0",
        "SIM_SEED": "11",
    }
    if push_url is not None:
        env |= {"SIM_WEBHOOK_URL": push_url, "SIM_WEBHOOK_SECRET": WEBHOOK_SECRET}
    return env


def _service_env(args: argparse.Namespace) -> dict[str, str]:
    env = {
        "MONITE_RATE_LIMIT": str(args.budget),
        "POLL_SCHEDULE_S": args.poll_schedule,
        "API_RATE_LIMIT_PER_MINUTE": "100000000",
    }
    if args.push:
        env["MONITE_WEBHOOK_SECRET"] = WEBHOOK_SECRET
    return env


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds of each process so far (Linux ``/proc``), and of this one."""
    ticks = 100.0  # USER_HZ on Linux
    out: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / ticks
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["bench"] = usage.ru_utime + usage.ru_stime
    return out


async def run_relay(args: argparse.Namespace, size: int) -> RunResult:
    """ocr-relay with N watches registered through its API; callbacks to the receiver.

    Tasks are created chunk by chunk, each just before its watches, with a duration of the time
    left until all N are registered (at the rate measured so far) + ``--durations``.
    """
    with Stack("scale") as stack:
        push_url = f"{stack.api_url}/v1/monite/webhooks" if args.push else None
        stack.start_simulator(_sim_env(args, push_url))
        env = _service_env(args)
        stack.start_api(env)
        stack.start_workers(args.workers, env)
        if args.profile is not None:
            stack.start_profilers(args.profile / f"{size}")
        cpu_before = _cpu_seconds(stack.pids())
        entities = entity_ids(args.entities)
        async with Receiver() as receiver, httpx.AsyncClient(timeout=60.0) as http:
            sim = SimulatorControl(stack.simulator_url, SimulatorConfig(), http)
            started = time.monotonic()
            registered_at: dict[str, float] = {}
            finish_by = 0.0
            while len(registered_at) < size:
                done = len(registered_at)
                rate = done / (time.monotonic() - started) if done else FIRST_GUESS_PER_S
                ahead_s = (size - done) / rate
                chunk, chunk_finish_by = await create_tasks(
                    sim,
                    entities,
                    min(args.chunk, size - done),
                    ahead_s + args.durations[0],
                    ahead_s + args.durations[1],
                )
                finish_by = max(finish_by, chunk_finish_by)
                await register_watches(
                    stack.api_url, stack.api_key, chunk, receiver.url, concurrency=args.concurrency
                )
                registered_at.update(dict.fromkeys((t for t, _ in chunk), time.time()))
                stack.check_alive()
            setup_s = time.monotonic() - started
            print(f"  registered in {setup_s:.0f} s ({size / setup_s:.0f}/s)", flush=True)
            await wait_for(
                lambda: len(receiver.arrivals) >= size,
                within_s=finish_by + args.settle - time.monotonic(),
                check=stack.check_alive,
            )
            requests, throttled, peak = monite_totals(await sim.counters())
            metrics = await worker_metrics(http, stack.worker_metrics_urls)
            arrivals = list(receiver.arrivals.values())
        cpu_after = _cpu_seconds(stack.pids())
    late = {
        a.task_id
        for a in arrivals
        if a.finished_at is not None and a.finished_at < registered_at[a.task_id]
    }
    return RunResult(
        mode="ocr-relay + push" if args.push else "ocr-relay",
        watches=size,
        lags_s=[a.lag_s for a in arrivals if a.lag_s is not None and a.task_id not in late],
        late_registrations=len(late),
        requests=requests,
        throttled=throttled,
        peak_per_second=peak,
        setup_s=setup_s,
        cpu_s=_spent(cpu_before, cpu_after),
        metrics=metrics,
    )


async def run_per_task(args: argparse.Namespace, size: int) -> RunResult:
    """The baseline poller on N tasks that finish ``--durations`` after they are created."""
    with Stack("per-task") as stack:
        stack.start_simulator(_sim_env(args))
        cpu_before = _cpu_seconds(stack.pids())
        async with httpx.AsyncClient(timeout=60.0) as http:
            sim = SimulatorControl(stack.simulator_url, SimulatorConfig(), http)
            started = time.monotonic()
            tasks, finish_by = await create_tasks(
                sim, entity_ids(args.entities), size, *args.durations
            )
            setup_s = time.monotonic() - started
            poller = PerTaskPoller(sim, http, await sim.token(), args.budget)
            await poller.run(tasks, interval_s=args.interval, until=finish_by + args.settle)
            requests, throttled, peak = monite_totals(await sim.counters())
            stack.check_alive()
        cpu_after = _cpu_seconds(stack.pids())
    return RunResult(
        mode="per-task",
        watches=size,
        lags_s=list(poller.lags_s.values()),
        late_registrations=0,
        requests=requests,
        throttled=throttled,
        peak_per_second=peak,
        setup_s=setup_s,
        cpu_s=_spent(cpu_before, cpu_after),
    )


def _spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: cpu - before.get(name, 0.0) for name, cpu in after.items()}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="bench/scale.py",
        description="Concurrent watches kept ≤ 5 s fresh within Monite's rate limit: "
        "ocr-relay's batched polling against per-task polling, side by side.",
    )
    parser.add_argument("--sizes", default="1000,5000,15000", help="watch counts, comma-separated")
    parser.add_argument("--entities", type=int, default=10, help="Monite entities (poll groups)")
    parser.add_argument("--workers", type=int, default=2, help="ocr-relay worker processes")
    parser.add_argument("--budget", type=float, default=25.0, help="MONITE_RATE_LIMIT, req/s")
    parser.add_argument("--sim-rate-limit", type=float, default=30.0, help="SIM_RATE_LIMIT")
    parser.add_argument("--poll-schedule", default="1,2,3,4", help="POLL_SCHEDULE_S of ocr-relay")
    parser.add_argument(
        "--durations",
        default="5-20",
        help="seconds from the last registration until a task finishes, LOW-HIGH",
    )
    parser.add_argument("--interval", type=float, default=5.0, help="per-task poll interval, s")
    parser.add_argument("--chunk", type=int, default=1000, help="tasks created per chunk")
    # httpx's connection pool costs more CPU per request the more requests are in flight: with 64
    # the benchmark itself registers ~130/s, with 8 ~400/s on a 2-core machine.
    parser.add_argument("--concurrency", type=int, default=8, help="registrations in flight")
    parser.add_argument("--settle", type=float, default=20.0, help="s after the last completion")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the ocr-relay processes with py-spy into DIR/<size>/<process>.txt",
    )
    parser.add_argument("--skip-baseline", action="store_true", help="ocr-relay runs only")
    parser.add_argument(
        "--push",
        action="store_true",
        help="the simulator also sends ocr_task.finished to ocr-relay's push intake",
    )
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes: expected comma-separated whole numbers, got {args.sizes!r}")
    try:
        args.durations = parse_duration_range(args.durations)
    except ValueError as exc:
        parser.error(f"--durations: {exc}")
    if any(s < 1 for s in args.sizes) or args.entities < 1 or args.workers < 1:
        parser.error("--sizes, --entities and --workers must be positive")
    return args


async def main(args: argparse.Namespace) -> int:
    """Run every size, both ways, and print the table."""
    rows, inside = [], []
    for size in args.sizes:
        print(f"{size:,} watches: ocr-relay …", flush=True)
        relay = await run_relay(args, size)
        rows.append(relay.row())
        inside.append(relay.inside_row())
        if not args.skip_baseline:
            print(f"{size:,} watches: per-task polling …", flush=True)
            rows.append((await run_per_task(args, size)).row())
    print()
    print(table(HEADER, rows))
    print()
    print(table(INSIDE_HEADER, inside))
    return 0


if __name__ == "__main__":
    options = parse_args()
    raise SystemExit(run_main(lambda: main(options)))
