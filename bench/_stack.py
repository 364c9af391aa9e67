"""What the benchmarks share: real ocr-relay processes on loopback, a callback receiver, helpers.

``Stack`` starts a private ``redis-server``, the simulator, the API and workers as child
processes (``python -m service.cli …``, each in its own session, its output in a log file) and
stops every one of them when the ``with`` block ends, also on Ctrl-C, SIGTERM or an error.
``Receiver`` is an aiohttp callback receiver in the benchmark's own process: it answers 200 at
once and notes when each event arrived and when Monite finished its task (``recognized_at``).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Final

import httpx
import msgspec
import redis
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from service.cli.devstack import RedisServer, free_port
from service.settings import DEV_MONITE_CLIENT_ID, DEV_MONITE_CLIENT_SECRET
from service.simulator import SimulatorControl
from service.simulator.state import Counters
from service.storage.keys import Keys

# The checkout this file belongs to: its service code runs in the children, whatever is installed.
ROOT: Final = Path(__file__).resolve().parent.parent
ENTITY_PREFIX: Final = "00000000-0000-4000-8000-"
_STOP_TIMEOUT_S: Final = 10.0
_START_TIMEOUT_S: Final = 30.0


class StackError(RuntimeError):
    """A process of the stack did not start, or died while the benchmark ran."""


def entity_ids(count: int) -> list[str]:
    """``count`` distinct, stable Monite entity ids."""
    return [f"{ENTITY_PREFIX}{n:012d}" for n in range(count)]


def new_api_key() -> tuple[str, str]:
    """A fresh API key and its ``API_KEYS`` entry (client ``bench``)."""
    key = "bench_" + secrets.token_urlsafe(24)
    return key, f"bench:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


class Child:
    """One child process, in its own session, its stdout and stderr in ``log_path``."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal reaches the benchmark only, which then
            # stops the children in order.
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def tail(self, chars: int = 1500) -> str:
        """The end of the process's log, for error messages."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM)."""
        if self.alive:
            self.process.terminate()

    def wait(self, timeout_s: float = _STOP_TIMEOUT_S) -> None:
        """Wait for the process to exit, killing it after ``timeout_s``; closes the log."""
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


class Stack:
    """Private Redis, simulator, API and workers on loopback; everything stops on ``__exit__``.

    Their logs and Redis data live in a temporary directory, removed after a clean run and kept
    (its path printed) after a failure.

    ``start_simulator`` first (its URL goes into the service's environment), then ``start_api``
    and ``start_workers``. ``env`` holds what the service processes share.
    """

    def __init__(self, label: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"ocr-relay-bench-{label}-"))
        self.children: list[Child] = []
        self.profilers: list[Child] = []
        self.worker_metrics_urls: list[str] = []
        self.api_key, api_keys_entry = new_api_key()
        self.redis = RedisServer(self.dir / "redis", appendonly=False)
        self.simulator_url = ""
        # Known before anything starts, so the simulator can be told where to push.
        self._api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self._api_port}"
        self.env: dict[str, str] = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": self.redis.url,
            "REDIS_KEY_PREFIX": "bench:",
            "API_KEYS": api_keys_entry,
            "MONITE_CLIENT_ID": DEV_MONITE_CLIENT_ID,
            "MONITE_CLIENT_SECRET": DEV_MONITE_CLIENT_SECRET,
            "CALLBACK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "LOG_LEVEL": "WARNING",
        }

    def __enter__(self) -> Stack:
        self.redis.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The service first, all at once, so nothing outlives the Redis it uses.
        for child in reversed(self.children):
            child.terminate()
        for child in [*reversed(self.children), *self.profilers]:
            child.wait()
        self.redis.stop()
        if exc_type is None:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print(f"logs of the stack: {self.dir}", file=sys.stderr)

    def _spawn(self, name: str, args: list[str], env: Mapping[str, str]) -> Child:
        child = Child(
            name, [sys.executable, "-m", "service.cli", *args], env, self.dir / f"{name}.log"
        )
        self.children.append(child)
        return child

    def start_simulator(self, sim_env: Mapping[str, str]) -> str:
        """Start ``ocr-relay simulator`` with ``SIM_*`` variables; returns its root URL."""
        port = free_port()
        child = self._spawn(
            "simulator", ["simulator", "--port", str(port)], {**self.env, **sim_env}
        )
        self.simulator_url = f"http://127.0.0.1:{port}"
        self.env["MONITE_BASE_URL"] = f"{self.simulator_url}/v1"
        _wait_http(child, f"{self.simulator_url}/_sim/counters")
        return self.simulator_url

    def start_api(self, extra: Mapping[str, str]) -> str:
        """Start ``ocr-relay api`` at ``api_url`` with the shared environment and ``extra``."""
        args = ["api", "--port", str(self._api_port)]
        child = self._spawn("api", args, {**self.env, **extra})
        _wait_http(child, f"{self.api_url}/health/ready")
        return self.api_url

    def start_workers(self, count: int, extra: Mapping[str, str]) -> None:
        """Start ``count`` ``ocr-relay worker`` processes; returns once one heartbeats.

        Each serves its metrics on a port of its own (``worker_metrics_urls``).
        """
        started = []
        for n in range(count):
            port = free_port()
            self.worker_metrics_urls.append(f"http://127.0.0.1:{port}/metrics")
            env = {**self.env, **extra, "WORKER_METRICS_PORT": str(port)}
            started.append(self._spawn(f"worker{n}", ["worker"], env))
        heartbeat = Keys(self.env["REDIS_KEY_PREFIX"]).health_check()
        client = redis.Redis.from_url(self.redis.url)
        try:
            deadline = time.monotonic() + _START_TIMEOUT_S
            while not client.exists(heartbeat):
                _check_started(started, deadline)
                time.sleep(0.1)
        finally:
            client.close()

    def start_profilers(self, out_dir: Path) -> None:
        """Sample every service process with py-spy until it exits: ``<out_dir>/<name>.txt``.

        The files are collapsed stacks (``py-spy record --format raw``), one line per stack with
        its sample count; idle samples are left out, so the counts show where CPU went.
        """
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        out_dir.mkdir(parents=True, exist_ok=True)
        for child in self.children:
            argv = [py_spy, "record", "--pid", str(child.process.pid), "--format", "raw"]
            argv += ["--rate", "50", "--nonblocking", "-o", str(out_dir / f"{child.name}.txt")]
            log = self.dir / f"py-spy-{child.name}.log"
            self.profilers.append(Child(f"py-spy {child.name}", argv, self.env, log))

    def check_alive(self) -> None:
        """Raise ``StackError`` with its log tail if a process of the stack has died."""
        for child in self.children:
            if not child.alive:
                raise StackError(
                    f"{child.name} exited ({child.process.returncode}):\n{child.tail()}"
                )

    def pids(self) -> dict[str, int]:
        """Process ids by name (for profiling with ``py-spy record --pid``)."""
        return {c.name: c.process.pid for c in self.children}


def _check_started(children: Iterable[Child], deadline: float) -> None:
    for child in children:
        if not child.alive:
            raise StackError(f"{child.name} did not start:\n{child.tail()}")
    if time.monotonic() > deadline:
        raise StackError(f"{', '.join(c.name for c in children)} not ready in {_START_TIMEOUT_S}s")


def _wait_http(child: Child, url: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        _check_started([child], deadline)
        time.sleep(0.1)


# --- the callback receiver ----------------------------------------------------------------------


class _Source(msgspec.Struct):
    recognized_at: datetime


class _Document(msgspec.Struct):
    source: _Source


class _Data(msgspec.Struct):
    watch_id: str
    task_id: str
    document: _Document | None = None


class _Event(msgspec.Struct):
    """The parts of an ocr-relay event the benchmarks read."""

    type: str
    data: _Data


class Arrival(msgspec.Struct, frozen=True):
    """One event at the receiver: its task, when Monite finished it and when the event arrived."""

    task_id: str
    event_type: str
    finished_at: float | None
    """Epoch seconds of the task's ``updated_at`` (``None`` for failure events)."""
    arrived_at: float

    @property
    def lag_s(self) -> float | None:
        """Seconds from the task's completion to the event's arrival."""
        return None if self.finished_at is None else self.arrived_at - self.finished_at


class Receiver:
    """Callback receiver on ``127.0.0.1``: 200 for everything, ``arrivals`` by task id.

    A redelivery of the same task keeps its first arrival: freshness is about the first one.
    """

    def __init__(self) -> None:
        self.arrivals: dict[str, Arrival] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        arrived = time.time()
        event = msgspec.json.decode(await request.read(), type=_Event)
        document = event.data.document
        finished = None if document is None else document.source.recognized_at.timestamp()
        self.arrivals.setdefault(
            event.data.task_id, Arrival(event.data.task_id, event.type, finished, arrived)
        )
        return web.Response(status=200)


# --- driving the simulator and the API ---------------------------------------------------------


async def create_tasks(
    sim: SimulatorControl, entities: list[str], size: int, low_s: float, high_s: float
) -> tuple[list[tuple[str, str]], float]:
    """Create ``size`` tasks round-robin over ``entities``, finishing ``low_s``-``high_s`` from now.

    Returns ``(task_id, entity_id)`` pairs and the monotonic time by which all have finished.
    """
    await sim.configure(task_duration_s=[low_s, high_s])
    finish_by = time.monotonic() + high_s
    count = len(entities)
    per_entity = [size // count + (n < size % count) for n in range(count)]
    created: list[tuple[str, str]] = []
    for entity, share in zip(entities, per_entity, strict=True):
        if share:
            ids = await sim.create_tasks(share, entity_id=entity, duration_s=None)
            created += [(task_id, entity) for task_id in ids]
    return created, finish_by


async def worker_metrics(http: httpx.AsyncClient, urls: list[str]) -> dict[str, float]:
    """The workers' Prometheus samples, summed over workers, keyed ``name{label="v",…}``."""
    totals: dict[str, float] = {}
    for url in urls:
        text = (await http.get(url)).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                key = f"{sample.name}{{{labels}}}"
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def monite_totals(counters: Counters) -> tuple[int, int, int]:
    """(requests, 429s, highest requests in any 1-second window) over the simulator's clients."""
    clients = counters.clients.values()
    return (
        sum(c.requests for c in clients),
        sum(c.throttled for c in clients),
        max((c.peak_per_second for c in clients), default=0),
    )


async def register_watches(
    api_url: str,
    api_key: str,
    tasks: Iterable[tuple[str, str]],
    callback_url: str,
    *,
    concurrency: int = 64,
) -> int:
    """Register a watch per ``(task_id, entity_id)`` with ``concurrency`` requests in flight.

    Returns how many were registered; any answer but 201 raises ``StackError``.
    """
    pending = list(tasks)
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=api_url, headers=headers, limits=limits) as http:

        async def lane(items: list[tuple[str, str]]) -> None:
            for task_id, entity in items:
                body = {"task_id": task_id, "entity_id": entity, "callback_url": callback_url}
                answer = await http.post("/v1/watches", json=body, timeout=60.0)
                if answer.status_code != 201:
                    raise StackError(f"registration -> {answer.status_code}: {answer.text[:300]}")

        lanes = [pending[n::concurrency] for n in range(concurrency)]
        async with asyncio.TaskGroup() as group:
            for items in lanes:
                group.create_task(lane(items))
    return len(pending)


async def wait_for(
    done: Callable[[], bool], *, within_s: float, check: Callable[[], None], tick_s: float = 0.2
) -> bool:
    """Wait until ``done()`` or ``within_s`` passed (False); ``check()`` runs every tick."""
    deadline = time.monotonic() + within_s
    while not done():
        if time.monotonic() > deadline:
            return False
        check()
        await asyncio.sleep(tick_s)
    return True


# --- reporting and process control --------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0…1) of ``values`` by the nearest-rank method; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, numbers right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so ``with Stack`` blocks clean up either way."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_main(main: Callable[[], Coroutine[None, None, int]]) -> int:
    """Run an async benchmark; exit 130 on Ctrl-C or SIGTERM, 1 when the stack fails.

    Stacks are ``with`` blocks inside ``main``, so they stop their processes on either way out.
    """
    with sigterm_as_interrupt():
        try:
            return asyncio.run(main())
        except KeyboardInterrupt:
            print("interrupted: every process started was stopped", file=sys.stderr)
            return 130
        except StackError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
