"""``ocr-relay dev``: api, worker, simulator and, when needed, a private Redis in one terminal.

Over 400 lines, for a reason: the dev stack's whole life (plan, start, banner, supervise, stop)
is one job; its dev secrets and its Redis are small helpers of it.

Children run in their own sessions so that Ctrl-C reaches only this process; it then stops them in
order (api/worker/simulator first, the private Redis last) so nothing loses its Redis mid-shutdown.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Final, NamedTuple

import httpx
import redis
from redis.sentinel import Sentinel

from service.callbacks.sealing import generate_key
from service.cli.dev_inbox import INBOX_PATH
from service.domain.signing import generate_secret
from service.sentinel_url import parse_sentinel_url
from service.settings import (
    DEV_MONITE_CLIENT_ID,
    DEV_MONITE_CLIENT_SECRET,
    Settings,
    without_credentials,
)
from service.simulator.config import DEV_WEBHOOK_SECRET

REDIS_INSTALL_HINT: Final = (
    "redis-server was not found on PATH and no Redis answers at REDIS_URL. Install it with "
    "'sudo apt-get install -y redis-server' (Debian/Ubuntu) or 'brew install redis' (macOS), "
    "or point REDIS_URL at a running Redis."
)
DEV_DATA_DIR: Final = Path(".ocr-relay")
SECRETS_KEY_FILE: Final = "secrets.key"
DEV_API_KEY_FILE: Final = "dev-api-key"
DEV_OPERATOR_KEY_FILE: Final = "dev-operator-key"
DEV_INBOX_SECRET_FILE: Final = "dev-inbox-secret"  # noqa: S105 - a file name, not a secret
SAMPLE_INVOICE: Final = Path(__file__).resolve().parents[2] / "samples" / "invoice.pdf"
DEV_CALLBACK_NETWORKS: Final = "127.0.0.0/8,::1/128"
_STOP_TIMEOUT_S: Final = 10.0
_TICK_S: Final = 0.2


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_reachable(url: str, timeout_s: float = 1.0) -> bool:
    """True when a Redis at ``url`` answers PING (a wrong password still counts as reachable).

    Through Sentinel (``redis+sentinel://``), the primary the sentinels name must answer.
    """
    timeouts = {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s}
    sentinel = parse_sentinel_url(url)
    if sentinel is None:
        client = redis.Redis.from_url(url, **timeouts)
    else:
        asked = {**timeouts, "password": sentinel.sentinel_password}
        manager = Sentinel(sentinel.sentinels, sentinel_kwargs=asked)  # type: ignore[no-untyped-call]
        client = manager.master_for(  # type: ignore[no-untyped-call]
            sentinel.service_name,
            db=sentinel.db,
            username=sentinel.username,
            password=sentinel.password,
            **timeouts,
        )
    try:
        client.ping()
    except redis.AuthenticationError:
        return True
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()
    return True


class RedisServer:
    """A private ``redis-server`` on a loopback port with its data in one directory (the dev
    stack's Redis when none runs; the tests' fault-injecting subclass adds pause and kill)."""

    def __init__(self, data_dir: Path, port: int | None = None, *, appendonly: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port if port is not None else free_port()
        self.appendonly = appendonly
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self.running and self._process else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def argv(self, binary: str) -> list[str]:
        """The server's command line; redis-server takes its configuration as arguments, so
        nothing is written to /etc."""
        return [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--logfile", str(self.data_dir / "redis.log"),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
        ]  # fmt: skip

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait until it answers PING; raises ``RuntimeError`` otherwise."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(REDIS_INSTALL_HINT)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            self.argv(binary),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while not redis_reachable(self.url, timeout_s=0.5):
            if not self.running or time.monotonic() > deadline:
                _terminate(self._process, 0.0)
                log_file = self.data_dir / "redis.log"
                tail = log_file.read_text(errors="replace")[-500:] if log_file.exists() else ""
                raise RuntimeError(f"redis-server on port {self.port} did not start: {tail}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = _STOP_TIMEOUT_S) -> None:
        """Shut the server down gracefully (SIGTERM), killing it if it does not exit in time."""
        if self._process is not None:
            _terminate(self._process, timeout_s)


def _terminate(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class _Child:
    """One child process whose output is forwarded line by line with its name in front."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.name = name
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._forwarder = threading.Thread(
            target=_forward, args=(name, self.process.stdout), daemon=True
        )
        self._forwarder.start()

    def stop(self) -> None:
        _terminate(self.process, _STOP_TIMEOUT_S)
        self._forwarder.join(timeout=1.0)


_print_lock = threading.Lock()


def _say(name: str, line: str) -> None:
    with _print_lock:
        print(f"{name:<9}| {line}", flush=True)


def _forward(name: str, stream: IO[bytes] | None) -> None:
    if stream is None:
        return
    for raw in stream:
        _say(name, raw.decode(errors="replace").rstrip())


def _command(*args: str) -> list[str]:
    # The running interpreter, not whatever `ocr-relay` PATH finds, so dev uses this install.
    return [sys.executable, "-m", "service.cli", *args]


def _kept(path: Path, make: Callable[[], str]) -> str:
    """The value kept in ``path``: made once, then reused by every later run of the dev stack."""
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    # Owner-only from the first byte: each of these files is as sensitive as what it opens.
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as fh:
        fh.write(value + "\n")
    return value


def dev_secrets_key(data_dir: Path) -> str:
    """The dev stack's ``SECRETS_KEY``, kept so that watches sealed by an earlier run still open."""
    return _kept(data_dir / SECRETS_KEY_FILE, generate_key)


def dev_inbox_secret(data_dir: Path) -> str:
    """The webhook secret the dev inbox verifies with, kept in the dev data dir across runs."""
    return _kept(data_dir / DEV_INBOX_SECRET_FILE, generate_secret)


def dev_api_key(data_dir: Path) -> str:
    """The API key of the dev stack's client ``dev``, kept in the dev data dir across runs."""
    return _kept(data_dir / DEV_API_KEY_FILE, lambda: "dev_" + secrets.token_urlsafe(32))


def dev_operator_key(data_dir: Path) -> str:
    """The console key of the dev stack's operator ``dev``, kept in the dev data dir."""
    return _kept(data_dir / DEV_OPERATOR_KEY_FILE, lambda: "op_" + secrets.token_urlsafe(32))


def _api_keys_entry(key: str, name: str = "dev") -> str:
    return f"{name}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


@contextlib.contextmanager
def _stop_signals() -> Iterator[threading.Event]:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


class Ports(NamedTuple):
    """The loopback ports of the dev stack's servers."""

    api: int
    simulator: int
    inbox: int


class _Plan(NamedTuple):
    """What dev runs: environment overrides for the children, their command lines, the banner."""

    env: dict[str, str]
    commands: list[tuple[str, list[str]]]
    banner: list[str]


def _shown_path(path: Path) -> str:
    """``path`` as short as it can be pasted from here: relative below the working directory."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _inspect_command(settings: Settings, redis_url: str) -> str:
    """The exact ``inspect`` command line that reads the Redis this dev stack uses."""
    script = _shown_path(Path(sys.executable).parent / "ocr-relay")
    env = ""
    # A URL with a password stays out of the banner; the caller's shell already has it then.
    if without_credentials(redis_url) == redis_url:
        env = f"REDIS_URL={redis_url} "
    if settings.key_prefix != Settings().key_prefix:
        env += f"REDIS_KEY_PREFIX={settings.key_prefix} "
    return f"{env}{script} inspect WATCH_ID   # or --task TASK_ID, or --event EVENT_ID"


def _plan(settings: Settings, environ: Mapping[str, str], redis_url: str, ports: Ports) -> _Plan:
    api = f"http://127.0.0.1:{ports.api}"
    plan = _Plan(
        env={},
        commands=[],
        banner=[
            f"API:        {api}",
            f"OpenAPI:    {api}/schema (Swagger UI: {api}/schema/swagger)",
        ],
    )
    if settings.monite_has_credentials:
        plan.banner.append(f"Monite:     {settings.monite_base_url}")
    else:
        plan.commands.append(("simulator", _command("simulator", "--port", str(ports.simulator))))
        plan.env["MONITE_BASE_URL"] = f"http://127.0.0.1:{ports.simulator}/v1"
        plan.env["MONITE_CLIENT_ID"] = DEV_MONITE_CLIENT_ID
        plan.env["MONITE_CLIENT_SECRET"] = DEV_MONITE_CLIENT_SECRET
        if not settings.monite_webhook_secret:
            # The simulator pushes ocr_task.finished like Monite, so dev exercises the fast path.
            plan.env["SIM_WEBHOOK_URL"] = f"{api}/v1/monite/webhooks"
            plan.env["MONITE_WEBHOOK_SECRET"] = DEV_WEBHOOK_SECRET
        # A first upload that fails at random looks like a bug; chaos stays one variable away.
        plan.env["SIM_OCR_ERROR_RATE"] = environ.get("SIM_OCR_ERROR_RATE", "0")
        plan.banner.append(
            f"Simulator:  {plan.env['MONITE_BASE_URL']} (no Monite credentials configured; "
            f"SIM_OCR_ERROR_RATE={plan.env['SIM_OCR_ERROR_RATE']})"
        )
    if not settings.callback_allowed_networks:
        # Callbacks in dev go to receivers on this machine, which the egress policy refuses.
        plan.env["CALLBACK_ALLOWED_NETWORKS"] = DEV_CALLBACK_NETWORKS
        plan.banner.append(f"Callbacks:  loopback allowed in dev ({DEV_CALLBACK_NETWORKS})")
    if not settings.secrets_key:
        plan.env["SECRETS_KEY"] = dev_secrets_key(DEV_DATA_DIR)
        plan.banner.append(
            f"Sealing:    key in {DEV_DATA_DIR / SECRETS_KEY_FILE} (webhook secrets are sealed)"
        )
    key = "$KEY"
    if not settings.api_keys:
        key = dev_api_key(DEV_DATA_DIR)
        plan.env["API_KEYS"] = _api_keys_entry(key)
        plan.banner.append(
            f"API key:    {key}  (client 'dev', kept in {DEV_DATA_DIR / DEV_API_KEY_FILE})"
        )
    if settings.console_keys:
        plan.banner.append(f"Console:    {api}/console (sign in with your CONSOLE_KEYS key)")
    else:
        operator_key = dev_operator_key(DEV_DATA_DIR)
        plan.env["CONSOLE_KEYS"] = _api_keys_entry(operator_key)
        plan.banner.append(
            f"Console:    {api}/console  operator key: {operator_key}  (operator 'dev', kept in "
            f"{DEV_DATA_DIR / DEV_OPERATOR_KEY_FILE})"
        )
    inbox = f"http://127.0.0.1:{ports.inbox}{INBOX_PATH}"
    inbox_secret = dev_inbox_secret(DEV_DATA_DIR)
    plan.commands.append(
        (
            "inbox",
            _command(
                "dev-inbox",
                "--port", str(ports.inbox),
                "--secret-file", str(DEV_DATA_DIR / DEV_INBOX_SECRET_FILE),
            ),
        )
    )  # fmt: skip
    sample = _shown_path(SAMPLE_INVOICE)
    plan.banner.extend(
        [
            f"Dev inbox:  {inbox} (verifies signatures with the secret in "
            f"{DEV_DATA_DIR / DEV_INBOX_SECRET_FILE})",
            f'Upload:     curl -s {api}/v1/documents -H "Authorization: Bearer {key}" '
            f"-F file=@{sample} -F document_type=invoice -F callback_url={inbox} "
            f"-F secret={inbox_secret}",
            f"Arrived:    curl -s {inbox}",
            f"Inspect:    {_inspect_command(settings, redis_url)}",
        ]
    )
    plan.commands.append(("api", _command("api", "--port", str(ports.api))))
    plan.commands.append(("worker", _command("worker")))
    return plan


def _stop_children(children: list[_Child]) -> None:
    # SIGTERM to all first so they shut down in parallel, then wait for each.
    for child in children:
        if child.process.poll() is None:
            child.process.terminate()
    for child in children:
        child.stop()


def run_dev(settings: Settings, ports: Ports) -> int:
    """Run the dev stack until Ctrl-C/SIGTERM (exit 0) or until a child dies (exit 1)."""
    with _stop_signals() as stop, contextlib.ExitStack() as cleanup:
        # Callbacks run last-in first-out: children stop before the Redis they use.
        cleanup.callback(_say, "dev", "stopped")
        env = dict(os.environ)
        redis_url = settings.redis_url
        if not redis_reachable(settings.redis_url):
            private_redis = RedisServer(DEV_DATA_DIR / "redis")
            try:
                private_redis.start()
            except RuntimeError as exc:
                print(f"ocr-relay dev: {exc}", file=sys.stderr)
                return 1
            cleanup.callback(private_redis.stop)
            env["REDIS_URL"] = redis_url = private_redis.url
            _say(
                "dev",
                f"started a private Redis at {private_redis.url} "
                f"(pid {private_redis.pid}, data in {private_redis.data_dir})",
            )
        plan = _plan(settings, os.environ, redis_url, ports)
        env.update(plan.env)
        children: list[_Child] = []
        cleanup.callback(_stop_children, children)
        for name, argv in plan.commands:
            children.append(_Child(name, argv, env))
            _say("dev", f"started {name} (pid {children[-1].process.pid})")
        return _supervise(children, stop, f"http://127.0.0.1:{ports.api}/health/ready", plan.banner)


def _supervise(
    children: list[_Child], stop: threading.Event, ready_url: str, banner: list[str]
) -> int:
    ready = False
    while not stop.wait(_TICK_S):
        dead = next((c for c in children if c.process.poll() is not None), None)
        if dead is not None:
            _say("dev", f"{dead.name} exited with code {dead.process.returncode}; stopping")
            return 1
        if not ready and _ready(ready_url):
            ready = True
            for line in ["ocr-relay dev is ready (Ctrl-C stops everything)", *banner]:
                _say("dev", line)
    return 0
