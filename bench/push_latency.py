"""Push fast path: from a task's completion to the callback, with and without Monite's push.

Run: ``.venv/bin/python bench/push_latency.py --tasks 300`` (``--help`` for the knobs).

Two runs of the same stack (private ``redis-server``, simulator, API, one worker, as real
processes on loopback; callbacks to a receiver in this process), each with ``--tasks`` tasks of one
entity, all watched, then finished one by one, evenly over ``--spread`` seconds, through the
simulator's control API (``POST /_sim/tasks/{id}/complete``, which pushes at once: the simulator's
own timer can fire a hair before a task's finish time and then drops the push):

* **push**: the simulator sends ``ocr_task.finished`` (``SIM_WEBHOOK_URL`` = the API's
  ``/v1/monite/webhooks``, ``SIM_WEBHOOK_SECRET`` = its ``MONITE_WEBHOOK_SECRET``);
* **poll only**: no push; the same service.

Both poll on a slow schedule (``POLL_SCHEDULE_S=30``), so only the push explains fast arrivals.
Latency is the time from the task's completion in the simulator (its ``updated_at``, which the event
carries as ``source.recognized_at``) to the callback's arrival at the receiver.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from typing import Final

import httpx
from _stack import (
    Receiver,
    Stack,
    entity_ids,
    monite_totals,
    percentile,
    register_watches,
    run_main,
    table,
    wait_for,
)

from service.simulator import SimulatorConfig, SimulatorControl

WEBHOOK_SECRET: Final = "whsec_bench-push-secret"  # noqa: S105 - a throwaway secret of this run
# A watch whose push is lost waits for its next poll: up to 30 s + 20 % jitter.
SETTLE_S: Final = 40.0
HEADER: Final = [
    "mode",
    "tasks",
    "arrived",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "Monite requests",
    "429s",
    "pushes sent",
    "pushes failed",
]


async def run(args: argparse.Namespace, *, push: bool) -> list[str]:
    """One run; returns its row of the results table."""
    with Stack("push" if push else "poll") as stack:
        sim_env = {"SIM_RATE_LIMIT": "30", "SIM_OCR_ERROR_RATE": "0", "SIM_SEED": "13"}
        if push:
            sim_env["SIM_WEBHOOK_URL"] = f"{stack.api_url}/v1/monite/webhooks"
            sim_env["SIM_WEBHOOK_SECRET"] = WEBHOOK_SECRET
        stack.start_simulator(sim_env)
        service_env = {
            "POLL_SCHEDULE_S": "30",
            "MONITE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "API_RATE_LIMIT_PER_MINUTE": "1000000",
        }
        stack.start_api(service_env)
        stack.start_workers(1, service_env)
        async with Receiver() as receiver, httpx.AsyncClient(timeout=30.0) as http:
            sim = SimulatorControl(stack.simulator_url, SimulatorConfig(), http)
            [entity] = entity_ids(1)
            tasks = await sim.create_tasks(args.tasks, entity_id=entity, outcome="never")
            await register_watches(
                stack.api_url, stack.api_key, [(t, entity) for t in tasks], receiver.url
            )
            await finish_evenly(sim, tasks, args.spread)
            await wait_for(
                lambda: len(receiver.arrivals) >= args.tasks,
                within_s=SETTLE_S,
                check=stack.check_alive,
            )
            counters = await sim.counters()
            lags_ms = [1000 * a.lag_s for a in receiver.arrivals.values() if a.lag_s is not None]
    requests, throttled, _ = monite_totals(counters)
    return [
        "push" if push else "poll only",
        f"{args.tasks}",
        f"{len(lags_ms)}",
        *(f"{percentile(lags_ms, q):.0f}" for q in (0.5, 0.9, 0.99, 1.0)),
        f"{requests}",
        f"{throttled}",
        f"{counters.webhooks.delivered}",
        f"{counters.webhooks.failed}",
    ]


async def finish_evenly(sim: SimulatorControl, task_ids: list[str], spread_s: float) -> None:
    """Finish the tasks one by one, evenly over ``spread_s`` seconds."""
    started = time.monotonic()
    for n, task_id in enumerate(task_ids):
        delay = started + spread_s * n / len(task_ids) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await sim.complete(task_id)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="bench/push_latency.py",
        description="Completion-to-callback latency with Monite's ocr_task.finished push "
        "against polling alone (POLL_SCHEDULE_S=30).",
    )
    parser.add_argument("--tasks", type=int, default=300, help="tasks (and watches) per run")
    parser.add_argument(
        "--spread", type=float, default=30.0, help="seconds over which the tasks finish"
    )
    parser.add_argument("--skip-poll-only", action="store_true", help="the push run only")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.spread < 0:
        parser.error("--tasks must be positive and --spread not negative")
    return args


async def main(args: argparse.Namespace) -> int:
    """Both runs, then the table."""
    rows = []
    for push in (True, False) if not args.skip_poll_only else (True,):
        print(f"{'push' if push else 'poll only'}: {args.tasks} tasks …", flush=True)
        rows.append(await run(args, push=push))
    print()
    print(table(HEADER, rows))
    return 0


if __name__ == "__main__":
    options = parse_args()
    raise SystemExit(run_main(lambda: main(options)))
