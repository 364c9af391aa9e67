"""Shared fixtures: a real Redis slice per test, settings bound to it, the simulator, receivers.

Redis: tests use ``OCR_RELAY_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/9``) and a unique
key prefix per test; teardown deletes every key of that prefix (arq's job keys carry it too), so a
shared Redis is never assumed empty and is left as it was found.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.cli.devstack import RedisServer
from service.settings import ENV_VARS, Settings
from service.storage.keys import Keys

TEST_REDIS_URL = os.environ.get("OCR_RELAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def cli_env(**settings: str) -> dict[str, str]:
    """The environment of an ``ocr-relay`` child process: this shell's, without any of the
    service's configuration variables, plus ``settings``."""
    base = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    return {**base, **settings}


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test (or deployment) uses."""
    return f"t-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def redis(key_prefix: str) -> AsyncIterator[Redis]:
    """A client of the test Redis; every key of this test's prefix is deleted afterwards."""
    client: Redis = Redis.from_url(TEST_REDIS_URL)
    yield client
    keys = [k async for k in client.scan_iter(match=Keys(key_prefix).pattern(), count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def settings(key_prefix: str) -> Settings:
    """Settings bound to this test's Redis slice, with fast schedules for tests."""
    return Settings(redis_url=TEST_REDIS_URL, key_prefix=key_prefix)


# --- process fixtures ---
# Fault tests need a Redis they may stop, kill and restart; the shared one must never be touched.


class RedisProcess(RedisServer):
    """A private ``redis-server`` that fault tests may pause, kill and configure: the dev stack's
    ``RedisServer`` only starts and stops one; tests also need one that hangs (SIGSTOP:
    connections open, nothing answered, like a partitioned host), crashes (SIGKILL, no flush) and
    starts again on the same port and data, and one started from a config file it may rewrite (a
    sentinel). ``extra_args`` go on the command line (``--replicaof …``)."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        appendonly: bool = True,
        extra_args: Sequence[str] = (),
        config: str | None = None,
    ) -> None:
        super().__init__(data_dir, port, appendonly=appendonly)
        self.extra_args = tuple(extra_args)
        self.config = config

    def argv(self, binary: str) -> list[str]:
        """The base command line, after the config file (if any), before the extra arguments."""
        base = super().argv(binary)
        if self.config is None:
            return [*base, *self.extra_args]
        config_file = self.data_dir / "redis.conf"
        if not config_file.exists():  # a sentinel rewrites its own: keep it across restarts
            config_file.write_text(self.config)
        return [base[0], str(config_file), *base[1:], *self.extra_args]

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut down gracefully; a paused server is resumed first (it would hold SIGTERM)."""
        self.resume()
        super().stop(timeout_s)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections open, no command is ever answered."""
        if self.running and self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server go on (SIGCONT)."""
        if self.running and self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Kill the server without a chance to flush (simulates a crash)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., RedisProcess]]:
    """Factory: ``private_redis(appendonly=True, …)`` starts a ``redis-server`` of this test alone
    (options as ``RedisProcess`` takes them: ``extra_args``, ``config``).

    The returned ``RedisProcess`` has ``url``, ``port``, ``stop()`` (graceful), ``kill()`` (crash)
    and ``start()`` (again, same port and data). Every server still running is stopped afterwards.
    """
    servers: list[RedisProcess] = []

    def start(**options: Any) -> RedisProcess:
        server = RedisProcess(tmp_path / f"redis-{len(servers)}", **options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


# --- callback receiver fixtures ---
# A real HTTP server on loopback standing in for a customer's callback. Its imports live here, below
# the other blocks, so that parallel edits of this file never touch the same lines.

import asyncio  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable  # noqa: E402
from typing import Any  # noqa: E402

import msgspec  # noqa: E402
from aiohttp import web  # noqa: E402


class ReceivedRequest(msgspec.Struct, frozen=True):
    """One request the receiver got; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """How the receiver answers one request: after ``delay_s``, with status, headers and body.

    ``stall_s`` > 0 sends the status, headers and body, then holds the response open that long.
    """

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    delay_s: float = 0.0
    stall_s: float = 0.0


class Receiver:
    """A callback receiver on ``127.0.0.1``; answers from a script, then with ``default``.

    ``receiver.script([500, 500, Reply(status=302, headers={"location": "…"}), 200])`` queues
    answers; ``await receiver.wait_for(4)`` waits until four requests have arrived.
    """

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.default = Reply()
        self.url = ""
        self._replies: list[Reply] = []
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The port the receiver listens on."""
        return int(self.url.split(":")[2].split("/")[0])

    def script(self, replies: Sequence[int | Reply]) -> None:
        """Answer the next requests with these replies (a bare int is a status), in order."""
        self._replies.extend(Reply(status=r) if isinstance(r, int) else r for r in replies)

    async def wait_for(self, count: int, within_s: float = 10.0) -> list[ReceivedRequest]:
        """Wait until at least ``count`` requests arrived (``TimeoutError`` after ``within_s``)."""
        async with asyncio.timeout(within_s), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        record = ReceivedRequest(
            method=request.method,
            path=request.path_qs,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            at=time.time(),
        )
        reply = self._replies.pop(0) if self._replies else self.default
        async with self._arrived:
            self.requests.append(record)
            self._arrived.notify_all()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if not reply.stall_s:
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        await response.prepare(request)
        await response.write(reply.body)
        await asyncio.sleep(reply.stall_s)
        return response

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        """Listen on a free port of 127.0.0.1, over TLS when given a server ``ssl_context``."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Cancelled handlers and a short shutdown keep delayed replies from stalling teardown.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._runner is not None:
            await self._runner.cleanup()


class FakeDNS:
    """A resolver for ``build_callback_client(..., resolver=dns)`` answering from ``records``.

    Tests change ``records`` to rebind a name; unknown names fail like NXDOMAIN; ``asked`` lists
    every lookup.
    """

    def __init__(self, records: dict[str, list[str]] | None = None) -> None:
        self.records = records or {}
        self.asked: list[str] = []

    async def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        if host not in self.records:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.records[host]


@pytest.fixture
async def make_receiver() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    """Factory: ``await make_receiver(ssl_context=None)`` starts a receiver; all stop afterwards."""
    started: list[Receiver] = []

    async def make(ssl_context: ssl.SSLContext | None = None) -> Receiver:
        receiver = Receiver()
        await receiver.start(ssl_context)
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        await receiver.stop()


@pytest.fixture
async def receiver(make_receiver: Callable[..., Awaitable[Receiver]]) -> Receiver:
    """A callback receiver on loopback: ``.url``, ``.requests``, ``.script()``, ``.wait_for()``."""
    return await make_receiver()


# --- service fixtures ---
# The service's own parts bound to this test's Redis slice: store, API client, in-process worker.

from service.storage import Store  # noqa: E402


@pytest.fixture
def store(redis: Redis, key_prefix: str) -> Store:
    """The watch store on this test's key prefix."""
    return Store(redis, Keys(key_prefix))


import hashlib  # noqa: E402

from litestar.testing import AsyncTestClient  # noqa: E402

from service.api.app import create_app  # noqa: E402
from service.settings import ApiClient  # noqa: E402

API_KEYS = {"alpha": "ocr_alpha-test-key", "beta": "ocr_beta-test-key"}


def auth(client: str = "alpha") -> dict[str, str]:
    """The Authorization header of one of the test clients."""
    return {"Authorization": f"Bearer {API_KEYS[client]}"}


@pytest.fixture
def service_settings(settings: Settings) -> Settings:
    """Settings of a full service: two API clients, loopback callbacks allowed, fast schedules."""
    return msgspec.structs.replace(
        settings,
        api_keys=tuple(
            ApiClient(name=name, key_sha256=hashlib.sha256(key.encode()).digest())
            for name, key in API_KEYS.items()
        ),
        callback_allowed_networks=("127.0.0.0/8", "::1/128"),
        poll_schedule_s=(0.2, 0.3, 0.5),
        delivery_schedule_s=(0.0, 0.1, 0.1, 0.1, 0.1),
        delivery_timeout_s=2.0,
    )


@pytest.fixture
async def api(service_settings: Settings, redis: Redis) -> AsyncIterator[AsyncTestClient[Any]]:
    """An HTTP client of the API app (lifespan run), bound to this test's Redis slice."""
    async with AsyncTestClient(app=create_app(service_settings)) as client:
        yield client


# --- simulator fixtures ---
# One Monite simulator per test session (uvicorn on a free loopback port, in a background thread);
# each test gets it reset. Point the service at it with
# ``Settings(monite_base_url=simulator.base_url, monite_client_id=simulator.client_id,
# monite_client_secret=simulator.client_secret)``. Tasks finish at once unless a test asks for a
# duration, and OCR never fails unless asked (``outcome="error"``, ``chaos(error_ids=[...])``).

import httpx  # noqa: E402

from service.simulator import (  # noqa: E402
    BackgroundSimulator,
    Knobs,
    SimulatorConfig,
    SimulatorControl,
)

SIMULATOR_TEST_CONFIG = SimulatorConfig(
    seed=7, knobs=Knobs(task_duration_s=(0.0, 0.0), ocr_error_rate=0.0)
)


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[BackgroundSimulator]:
    """The session's simulator server; tests use the ``simulator`` fixture instead."""
    server = BackgroundSimulator(SIMULATOR_TEST_CONFIG)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def simulator(simulator_server: BackgroundSimulator) -> AsyncIterator[SimulatorControl]:
    """The simulator, reset: ``.base_url`` (…/v1), ``.root_url``, ``.client_id``/``.client_secret``,
    ``await .create_task(...)``, ``.complete(id)``, ``.counters()``, ``.chaos(**knobs)``,
    ``.configure(**knobs)``, ``.token()``, ``.headers(token, entity_id)``, ``.reset()``."""
    async with httpx.AsyncClient(timeout=10.0) as http:
        control = SimulatorControl(simulator_server.root_url, simulator_server.config, http)
        await control.reset()
        yield control


# --- end-to-end fixtures ---
# The whole service against the simulator: API client + in-process arq workers on one Redis slice.

from arq.worker import Worker  # noqa: E402

from workers.runner import close_worker, serve  # noqa: E402
from workers.worker import build_worker  # noqa: E402


@pytest.fixture
def e2e_settings(service_settings: Settings, simulator: SimulatorControl) -> Settings:
    """``service_settings`` pointed at the simulator with its credentials."""
    return msgspec.structs.replace(
        service_settings,
        monite_base_url=simulator.base_url,
        monite_client_id=simulator.client_id,
        monite_client_secret=simulator.client_secret,
    )


@pytest.fixture
async def e2e_api(e2e_settings: Settings, redis: Redis) -> AsyncIterator[AsyncTestClient[Any]]:
    """The API app bound to the simulator and this test's Redis slice."""
    async with AsyncTestClient(app=create_app(e2e_settings)) as client:
        yield client


@pytest.fixture
async def start_worker(
    e2e_settings: Settings, redis: Redis
) -> AsyncIterator[Callable[..., Awaitable[Worker]]]:
    """Factory: ``await start_worker()`` runs another in-process arq worker until the test ends."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(settings: Settings | None = None) -> Worker:
        worker = build_worker(settings or e2e_settings)
        running.append((worker, asyncio.create_task(worker.async_run())))
        return worker

    yield start
    for worker, task in running:
        # Let running jobs finish first: cancelling arq mid-job can leave a redis-py pipeline
        # holding its connection, which warns (an error here) when garbage-collected.
        for _ in range(100):
            if all(job.done() for job in worker.tasks.values()):
                break
            await asyncio.sleep(0.05)
        await close_worker(worker)
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def run_burst(e2e_settings: Settings, redis: Redis) -> Callable[..., Awaitable[int]]:
    """``await run_burst(settings=None)``: an in-process arq worker (on ``e2e_settings`` unless
    given others) in burst mode runs every queued job (due or deferred) until the queue is empty;
    returns how many jobs completed."""

    async def run(settings: Settings | None = None) -> int:
        worker = build_worker(settings or e2e_settings, burst=True, poll_delay=0.01)
        try:
            await worker.async_run()
            return worker.jobs_complete
        finally:
            await close_worker(worker)

    return run


@pytest.fixture
async def serving() -> AsyncIterator[Callable[..., asyncio.Task[None]]]:
    """Factory: ``serving(settings, **options)`` runs ``workers.runner.serve`` (restarts after a
    Redis outage, drain when its ``stop`` is set) until the test ends; returns its task."""
    started: list[asyncio.Task[None]] = []

    def start(settings: Settings, **options: Any) -> asyncio.Task[None]:
        started.append(asyncio.create_task(serve(settings, **options)))
        return started[-1]

    yield start
    for task in started:
        task.cancel()
    await asyncio.gather(*started, return_exceptions=True)


@pytest.fixture
async def worker(start_worker: Callable[..., Awaitable[Worker]]) -> Worker:
    """One running in-process worker."""
    return await start_worker()


# --- queue and reconciler fixtures ---
# The store's companions on the same Redis slice, for tests that call the services directly.

from arq.connections import ArqRedis  # noqa: E402

from service.queue import Queue  # noqa: E402
from service.reconcile import Reconciler  # noqa: E402


@pytest.fixture
def queue(store: Store) -> Queue:
    """The job queue on this test's key prefix (arq's keys carry the prefix too)."""
    arq = ArqRedis(
        connection_pool=store.redis.connection_pool, default_queue_name=store.keys.queue()
    )
    return Queue(arq, store.keys)


@pytest.fixture
def reconciler(store: Store, queue: Queue) -> Reconciler:
    """The reconciler of this test's store and queue; a step is overdue as soon as it is due
    (no slack), so a test need not wait for it."""
    return Reconciler(store, queue, slack_ms=0)


# --- worker process fixtures ---
# Real worker processes (``python -m …``) on this test's Redis slice, for faults that need a process
# of their own: SIGKILL. Each writes its output to a file of the test's tmp_path.

import subprocess  # noqa: E402
import sys  # noqa: E402


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment variables that give a worker process ``settings``' Redis slice, Monite,
    schedules and callback policy."""
    env = {
        "REDIS_URL": settings.redis_url,
        "REDIS_KEY_PREFIX": settings.key_prefix,
        "MONITE_BASE_URL": settings.monite_base_url,
        "MONITE_TIMEOUT_S": str(settings.monite_timeout_s),
        "POLL_SCHEDULE_S": ",".join(map(str, settings.poll_schedule_s)),
        "DELIVERY_SCHEDULE_S": ",".join(map(str, settings.delivery_schedule_s)),
        "DELIVERY_TIMEOUT_S": str(settings.delivery_timeout_s),
        "CALLBACK_ALLOWED_NETWORKS": ",".join(settings.callback_allowed_networks),
        "LOG_LEVEL": "WARNING",
    }
    if settings.monite_client_id and settings.monite_client_secret:
        env["MONITE_CLIENT_ID"] = settings.monite_client_id
        env["MONITE_CLIENT_SECRET"] = settings.monite_client_secret
    return env


@pytest.fixture
def spawn_worker(
    e2e_settings: Settings, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``spawn_worker(settings=None, *python_args)``: a worker process (default
    ``python -m service.cli worker``); every one still running is killed afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(settings: Settings | None = None, *python_args: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, *(python_args or ("-m", "service.cli", "worker"))],
            env=cli_env(**worker_env(settings or e2e_settings)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


# --- console fixtures ---
# The operators' console on the end-to-end service: an operator key, and a client that signs in.

import re  # noqa: E402

OPERATOR_KEY = "op_alice-test-key"
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(page: str) -> str:
    """The CSRF token of the first form on a console page."""
    found = _CSRF.search(page)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


@pytest.fixture
def console_settings(e2e_settings: Settings) -> Settings:
    """``e2e_settings`` with the console on: one operator, alice (``OPERATOR_KEY``)."""
    return msgspec.structs.replace(
        e2e_settings,
        console_keys=(
            ApiClient(name="alice", key_sha256=hashlib.sha256(OPERATOR_KEY.encode()).digest()),
        ),
    )


@pytest.fixture
async def console_api(
    console_settings: Settings, redis: Redis
) -> AsyncIterator[AsyncTestClient[Any]]:
    """The API app with the console on; not signed in (see ``operator``)."""
    async with AsyncTestClient(app=create_app(console_settings)) as client:
        yield client


@pytest.fixture
async def operator(console_api: AsyncTestClient[Any]) -> AsyncTestClient[Any]:
    """``console_api`` signed in as alice: its cookie jar holds the session."""
    form = await console_api.get("/console/login")
    signed_in = await console_api.post(
        "/console/login", data={"csrf": csrf_of(form.text), "key": OPERATOR_KEY}
    )
    assert signed_in.status_code == 200
    assert "Signed in as" in signed_in.text
    return console_api


async def confirm(client: AsyncTestClient[Any], path: str) -> Any:
    """Open a console action's confirmation page and press its button; the final response."""
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return await client.post(path, data={"csrf": csrf_of(page.text), "confirm": "yes"})


# --- browser fixtures ---
# The console in a real browser: Debian's chromium driven by Playwright (no browser download),
# against the API served by uvicorn on a loopback port. Screenshots land in ARTIFACTS.

import shutil  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "console"
CHROMIUM = os.environ.get("OCR_RELAY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
async def console_url(console_settings: Settings, redis: Redis) -> AsyncIterator[str]:
    """The API with the console on, served by uvicorn on a free loopback port: its base URL."""
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_app(console_settings), log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    server.should_exit = True
    await task
    listener.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Debian chromium; without one the test is skipped, except in CI (it fails)."""
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - once, before any I/O of the test
        if os.environ.get("CI"):
            pytest.fail(f"chromium is missing at {CHROMIUM}: .ci/run installs it")
        pytest.skip(f"chromium is missing at {CHROMIUM} (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        launched = await driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Any, console_url: str) -> AsyncIterator[Any]:
    """A laptop-sized browser tab on the console; a JavaScript dialog (an XSS probe firing)
    fails the test."""
    context = await browser.new_context(
        base_url=console_url, viewport={"width": 1280, "height": 900}
    )
    tab = await context.new_page()
    dialogs: list[str] = []
    tab.on("dialog", lambda dialog: dialogs.append(dialog.message))
    yield tab
    await context.close()
    assert dialogs == [], f"a script ran in the console: {dialogs}"


async def sign_in(tab: Any, key: str = OPERATOR_KEY) -> None:
    """Sign in through the console's form."""
    await tab.goto("/console")
    await tab.get_by_label("Operator key").fill(key)
    await tab.get_by_role("button", name="Sign in").click()


async def screenshot(tab: Any, name: str) -> None:
    """Save a full-page screenshot as ARTIFACTS/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
