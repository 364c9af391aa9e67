"""``ocr-relay dev`` and the private ``redis-server`` it (and fault tests) start."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from service.cli.devstack import dev_api_key, free_port, redis_reachable
from tests.conftest import Receiver, RedisProcess, cli_env

READY_TIMEOUT_S = 45.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _answers_ready(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class DevStack:
    """``ocr-relay dev`` as a subprocess on free ports.

    Its environment is this one without any configuration variable, plus ``settings``; REDIS_URL
    points where no Redis listens unless ``settings`` says otherwise.
    """

    def __init__(
        self, workdir: Path, api_port: int | None = None, settings: dict[str, str] | None = None
    ) -> None:
        self.api_port = api_port if api_port is not None else free_port()
        self.simulator_port = free_port()
        self.inbox_port = free_port()
        self.log = workdir / "dev.log"
        # A Redis nobody runs, unless the test's settings name one.
        env = cli_env(**{"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", **(settings or {})})
        ports = [
            *("--port", str(self.api_port), "--simulator-port", str(self.simulator_port)),
            *("--inbox-port", str(self.inbox_port)),
        ]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "dev", *ports],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> dict[str, int]:
        """Every process dev said it started, by name (Redis, simulator, api, worker) to pid."""
        found = re.findall(r"started (?:a private )?(\w+).*?\(pid (\d+)", self.output())
        return {name: int(pid) for name, pid in found}

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"dev exited early:\n{self.output()}"
            # Ready means both: the API says so and dev has printed its banner.
            if "ocr-relay dev is ready" in self.output() and _answers_ready(self.api):
                return
            time.sleep(0.2)
        pytest.fail(f"dev was not ready within {READY_TIMEOUT_S} s:\n{self.output()}")

    def interrupt(self, signum: int = signal.SIGINT) -> int:
        """Ctrl-C (or a SIGTERM) to dev alone: its children run in sessions of their own."""
        self.process.send_signal(signum)
        return self.process.wait(timeout=30)

    def close(self) -> None:
        """Leave nothing behind even when a test failed half-way."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        for pid in self.children().values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def dev_stack(tmp_path: Path) -> Iterator[Callable[..., DevStack]]:
    stacks: list[DevStack] = []

    def start(api_port: int | None = None, settings: dict[str, str] | None = None) -> DevStack:
        stacks.append(DevStack(tmp_path, api_port, settings))
        return stacks[-1]

    yield start
    for stack in stacks:
        stack.close()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_dev_becomes_ready_and_a_stop_signal_ends_every_child(
    dev_stack: Callable[..., DevStack], tmp_path: Path, signum: int
) -> None:
    stack = dev_stack()
    stack.wait_ready()
    children = stack.children()
    assert set(children) == {"Redis", "simulator", "inbox", "api", "worker"}, stack.output()
    assert (tmp_path / ".ocr-relay" / "redis").is_dir()

    assert stack.interrupt(signum) == 0, stack.output()
    assert [name for name, pid in children.items() if _alive(pid)] == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stack.api}/health/live", timeout=1)


@pytest.mark.slow
def test_dev_prints_an_api_key_the_api_accepts(dev_stack: Callable[..., DevStack]) -> None:
    stack = dev_stack()
    stack.wait_ready()
    match = re.search(r"API key:\s+(\S+)", stack.output())
    assert match, stack.output()
    key = match[1]
    with_key = httpx.get(f"{stack.api}/v1/watches", headers={"Authorization": f"Bearer {key}"})
    without = httpx.get(f"{stack.api}/v1/watches")
    assert (with_key.status_code, without.status_code) == (200, 401)


@pytest.mark.slow
def test_dev_prints_the_console_url_and_an_operator_key_that_signs_in(
    dev_stack: Callable[..., DevStack],
) -> None:
    stack = dev_stack()
    stack.wait_ready()
    match = re.search(r"Console:\s+(\S+)\s+operator key: (\S+)", stack.output())
    assert match, stack.output()
    console, key = match[1], match[2]
    assert console == f"{stack.api}/console"
    with httpx.Client(base_url=stack.api) as browser:
        form = browser.get("/console/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token, form.text
        signed_in = browser.post(
            "/console/login", data={"csrf": token[1], "key": key}, follow_redirects=True
        )
    assert signed_in.status_code == 200
    assert "Signed in as" in signed_in.text


@pytest.mark.slow
def test_dev_stops_the_rest_and_exits_1_when_a_child_dies(
    dev_stack: Callable[..., DevStack],
) -> None:
    with socket.socket() as taken:
        # The api cannot bind a port that is already in use, so it exits right after starting.
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stack = dev_stack(api_port=taken.getsockname()[1])
        assert stack.process.wait(timeout=READY_TIMEOUT_S) == 1, stack.output()
    assert "api exited" in stack.output()
    assert [name for name, pid in stack.children().items() if _alive(pid)] == []


@pytest.mark.slow
def test_dev_uses_a_reachable_redis_and_configured_monite_as_they_are(
    dev_stack: Callable[..., DevStack],
    private_redis: Callable[..., RedisProcess],
    tmp_path: Path,
) -> None:
    server = private_redis(appendonly=False)
    monite = {"MONITE_TOKEN": "a-static-token", "MONITE_BASE_URL": "http://127.0.0.1:9/v1"}
    stack = dev_stack(settings={"REDIS_URL": server.url, **monite})
    stack.wait_ready()
    assert set(stack.children()) == {"inbox", "api", "worker"}, stack.output()
    assert not (tmp_path / ".ocr-relay" / "redis").exists()
    assert stack.interrupt() == 0, stack.output()


def test_dev_without_redis_explains_how_to_install_it(tmp_path: Path) -> None:
    # No redis-server anywhere on PATH.
    env = cli_env(PATH=str(tmp_path), REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "dev"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "apt-get install -y redis-server" in result.stderr
    assert "brew install redis" in result.stderr
    assert "Traceback" not in result.stderr


def test_private_redis_keeps_writes_across_a_graceful_restart(
    private_redis: Callable[..., RedisProcess],
) -> None:
    server = private_redis()
    client = redis.Redis.from_url(server.url)
    client.set("watch", "kept")
    server.stop()
    assert not redis_reachable(server.url)
    server.start()
    assert client.get("watch") == b"kept"
    client.close()


def test_redis_is_unreachable_where_nothing_listens() -> None:
    assert not redis_reachable(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)


@pytest.mark.slow
async def test_dev_wires_the_simulators_push_to_the_api(
    dev_stack: Callable[..., DevStack], receiver: Receiver
) -> None:
    # Polls 30 s apart: only the simulator's ocr_task.finished push can finish the watch quickly.
    stack = dev_stack(settings={"POLL_SCHEDULE_S": "30"})
    await asyncio.to_thread(stack.wait_ready)
    key = re.search(r"API key:\s+(\S+)", stack.output())
    assert key, stack.output()
    sim = f"http://127.0.0.1:{stack.simulator_port}"
    entity = "9d3c1b2a-1111-4a2b-8c3d-4e5f6a7b8c9d"
    async with httpx.AsyncClient(timeout=10) as http:
        task = (
            await http.post(f"{sim}/_sim/tasks", json={"entity_id": entity, "duration_s": 2.0})
        ).json()
        created = await http.post(
            f"{stack.api}/v1/watches",
            json={"task_id": task["id"], "entity_id": entity, "callback_url": receiver.url},
            headers={"Authorization": f"Bearer {key[1]}"},
        )
        assert created.status_code == 201, created.text
        [delivery] = await receiver.wait_for(1, within_s=10)
        counters = (await http.get(f"{sim}/_sim/counters")).json()
    assert delivery.headers["webhook-id"].startswith("evt_")
    assert counters["webhooks"]["delivered"] == 1


# --- the first minutes: README's quick start and the banner's commands against a real dev stack ---

ROOT = Path(__file__).resolve().parent.parent
ARRIVAL_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def first_minutes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """One dev stack whose simulator finishes tasks at once, shared by the first-minutes tests;
    its working directory has the repository's samples, like the repository's root."""
    workdir = tmp_path_factory.mktemp("first-minutes")
    (workdir / "samples").symlink_to(ROOT / "samples")
    stack = DevStack(workdir, settings={"SIM_TASK_DURATION_S": "0"})
    try:
        stack.wait_ready()
        yield stack
    finally:
        stack.close()


def _banner(stack: DevStack, label: str) -> str:
    match = re.search(rf"{label}:\s+(.+)$", stack.output(), re.MULTILINE)
    assert match, stack.output()
    return match[1].strip()


def _shell(stack: DevStack, script: str) -> str:
    """Run ``script`` with bash where dev runs, the README's ports replaced by the stack's."""
    script = script.replace(":8000", f":{stack.api_port}").replace(":8200", f":{stack.inbox_port}")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=stack.log.parent,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _verified_arrival(stack: DevStack, show: str, watch_id: str) -> dict[str, Any]:
    """Run the command that shows the dev inbox until the watch's event has arrived."""
    deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
    while time.monotonic() < deadline:
        for arrival in json.loads(_shell(stack, show)):
            if (arrival["event"] or {}).get("data", {}).get("watch_id") == watch_id:
                found: dict[str, Any] = arrival
                return found
        time.sleep(0.5)
    pytest.fail(f"no event of {watch_id} arrived:\n{stack.output()}")


def _readme_block(heading: str) -> list[str]:
    """The lines of the first bash block under ``heading`` in the README."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(heading) :]
    block = section.partition("```bash\n")[2].partition("\n```")[0]
    return block.splitlines()


@pytest.mark.slow
def test_readme_quick_start_delivers_a_signed_event_to_the_dev_inbox(
    first_minutes: DevStack,
) -> None:
    *upload, show = _readme_block("## Try it")
    watch = json.loads(_shell(first_minutes, "\n".join(upload)))
    arrival = _verified_arrival(first_minutes, show, watch["id"])
    assert arrival["verified"] is True, arrival
    assert arrival["event"]["type"] == "invoice.recognized"


@pytest.mark.slow
def test_readme_api_examples_all_succeed_against_the_dev_stack(first_minutes: DevStack) -> None:
    *upload, show = _readme_block("## Try it")
    watch = json.loads(_shell(first_minutes, "\n".join(upload)))
    event_id = _verified_arrival(first_minutes, show, watch["id"])["webhook_id"]
    examples = [
        f"WATCH={watch['id']}" if line.startswith("WATCH=") else line.replace("evt_…", event_id)
        for line in _readme_block("## API")
    ]
    status_only = "curl -s -o /dev/null -w '%{http_code} %{method}\\n' "
    answers = _shell(first_minutes, "\n".join(examples).replace("curl -s ", status_only))
    assert len(answers.splitlines()) == sum(line.count("curl ") for line in examples), answers
    failed = [a for a in answers.splitlines() if not a.startswith("2")]
    # Cancelling a watch that has already been delivered may be refused (409) rather than a no-op.
    assert failed in ([], ["409 DELETE"]), answers
    arrivals = json.loads(_shell(first_minutes, show))
    assert [a for a in arrivals if not a["verified"]] == []


@pytest.mark.slow
def test_banner_upload_command_delivers_a_verified_event_the_arrived_command_shows(
    first_minutes: DevStack,
) -> None:
    watch = json.loads(_shell(first_minutes, _banner(first_minutes, "Upload")))
    arrival = _verified_arrival(first_minutes, _banner(first_minutes, "Arrived"), watch["id"])
    assert arrival["verified"] is True, arrival
    assert arrival["event"]["type"] == "invoice.recognized"


@pytest.mark.slow
def test_banner_inspect_command_reads_the_dev_stacks_redis(first_minutes: DevStack) -> None:
    watch = json.loads(_shell(first_minutes, _banner(first_minutes, "Upload")))
    command = _banner(first_minutes, "Inspect")
    inspected = json.loads(_shell(first_minutes, command.replace("WATCH_ID", watch["id"])))
    assert inspected["watch"]["id"] == watch["id"]


def test_the_dev_api_key_is_the_same_on_every_run(tmp_path: Path) -> None:
    first = dev_api_key(tmp_path)
    assert first.startswith("dev_")
    assert dev_api_key(tmp_path) == first


def _simulator_error_rate(stack: DevStack) -> float:
    knobs = httpx.get(f"http://127.0.0.1:{stack.simulator_port}/_sim/settings").json()
    rate: float = knobs["ocr_error_rate"]
    return rate


@pytest.mark.slow
def test_the_dev_simulator_fails_no_document_by_default(first_minutes: DevStack) -> None:
    assert _simulator_error_rate(first_minutes) == 0


@pytest.mark.slow
def test_the_dev_simulator_keeps_an_error_rate_that_is_set(
    dev_stack: Callable[..., DevStack],
) -> None:
    stack = dev_stack(settings={"SIM_OCR_ERROR_RATE": "0.25"})
    stack.wait_ready()
    assert _simulator_error_rate(stack) == 0.25
