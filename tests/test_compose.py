"""docker-compose.yml and the Dockerfile stay consistent with the CLI and the settings.

No Docker engine runs the files here, so these tests read them: every command must parse with the
CLI's own parser and every variable must be one the settings (or the simulator) read.
"""

from __future__ import annotations

import base64
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from service.cli import build_parser
from service.settings import (
    DEV_MONITE_CLIENT_ID,
    DEV_MONITE_CLIENT_SECRET,
    ENV_VARS,
    Settings,
)
from workers.runner import DRAIN_S

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("api", "worker")
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def _merged(base: Any, overlay: Any) -> Any:
    """What compose makes of a second ``-f`` file: mappings merge key by key, the rest replaces."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        return {k: _merged(base[k], v) if k in base else v for k, v in overlay.items()} | {
            k: v for k, v in base.items() if k not in overlay
        }
    return overlay


@pytest.fixture(scope="module")
def dev_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services of ``docker compose -f docker-compose.yml -f docker-compose.dev.yml``."""
    overlay = yaml.safe_load((ROOT / "docker-compose.dev.yml").read_text())
    found: dict[str, dict[str, Any]] = _merged(compose, overlay)["services"]
    return found


def _interpolate(value: str, environ: Mapping[str, str]) -> str:
    """What compose substitutes for ``${VAR:-default}`` given the caller's environment."""
    return _INTERPOLATION.sub(lambda m: environ.get(m[1]) or (m[2] or ""), value)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def _our_image(services: dict[str, dict[str, Any]]) -> list[str]:
    return [name for name, svc in services.items() if "build" in svc]


def test_every_service_of_our_image_runs_a_cli_command(
    dev_services: dict[str, dict[str, Any]],
) -> None:
    services = dev_services
    names = _our_image(services)
    assert set(names) >= {"api", "worker", "simulator"}
    parser = build_parser()
    for name in names:
        command = services[name]["command"]
        args = parser.parse_args(command)
        assert args.command == name


def test_app_services_set_only_variables_the_settings_know(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in APP_SERVICES:
        unknown = set(_environment(services[name])) - set(ENV_VARS)
        assert not unknown, f"{name} sets variables Settings does not read: {sorted(unknown)}"


def test_simulator_sets_only_variables_the_simulator_knows(
    dev_services: dict[str, dict[str, Any]],
) -> None:
    services = dev_services
    try:
        from service.simulator import SIMULATOR_ENV_VARS
    except ImportError:
        pytest.skip("service.simulator does not export SIMULATOR_ENV_VARS yet")
    unknown = set(_environment(services["simulator"])) - set(SIMULATOR_ENV_VARS)
    assert not unknown, f"simulator sets variables it does not read: {sorted(unknown)}"


def test_app_environment_defaults_are_valid_settings_aimed_at_monites_sandbox(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in APP_SERVICES:
        resolved = {k: _interpolate(v, {}) for k, v in _environment(services[name]).items()}
        settings = Settings.from_env(resolved)
        assert settings.monite_base_url == Settings().monite_base_url
        assert not settings.monite_has_credentials
        assert urlsplit(settings.redis_url).hostname == "redis"


def test_the_dev_overlay_aims_the_app_at_the_simulator_it_adds(
    dev_services: dict[str, dict[str, Any]],
) -> None:
    sim_port = _option(dev_services["simulator"]["command"], "--port")
    for name in APP_SERVICES:
        resolved = {k: _interpolate(v, {}) for k, v in _environment(dev_services[name]).items()}
        settings = Settings.from_env(resolved)
        assert settings.monite_has_credentials
        base = urlsplit(settings.monite_base_url)
        assert (base.hostname, str(base.port)) == ("simulator", sim_port)
        assert "simulator" in dev_services[name]["depends_on"]


def test_simulator_accepts_the_credentials_the_app_sends(
    dev_services: dict[str, dict[str, Any]],
) -> None:
    services = dev_services
    pair = ("MONITE_CLIENT_ID", "MONITE_CLIENT_SECRET")
    for environ in ({}, {"MONITE_CLIENT_ID": "mine", "MONITE_CLIENT_SECRET": "also-mine"}):
        sent = [_interpolate(_environment(services["worker"])[v], environ) for v in pair]
        accepted = [_interpolate(_environment(services["simulator"])[v], environ) for v in pair]
        assert sent == accepted
    defaults = [_interpolate(_environment(services["simulator"])[v], {}) for v in pair]
    assert defaults == [DEV_MONITE_CLIENT_ID, DEV_MONITE_CLIENT_SECRET]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_environment_takes_the_callers_monite_settings_and_secrets(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    sealing_key = base64.b64encode(bytes(range(32))).decode()
    caller = {
        "MONITE_BASE_URL": "https://api.monite.com/v1",
        "MONITE_TOKEN": "t0ken",
        "API_KEYS": f"billing:sha256:{'ab' * 32}",
        "CONSOLE_KEYS": f"alice:sha256:{'cd' * 32}",
        "SECRETS_KEY": sealing_key,
    }
    resolved = {k: _interpolate(v, caller) for k, v in _environment(services[name]).items()}
    settings = Settings.from_env(resolved)
    assert settings.monite_base_url == "https://api.monite.com/v1"
    assert settings.monite_token == "t0ken"
    assert [c.name for c in settings.api_keys] == ["billing"]
    assert [o.name for o in settings.console_keys] == ["alice"]
    assert settings.secrets_key == (bytes(range(32)),)


def test_redis_appends_every_write_to_a_named_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert _option(redis["command"], "--appendonly") == "yes"
    assert _option(redis["command"], "--appendfsync") in ("everysec", "always")
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data"
    assert volume in compose["volumes"]


@pytest.mark.parametrize("name", ["redis", "api", "worker"])
def test_service_has_a_healthcheck(services: dict[str, dict[str, Any]], name: str) -> None:
    check = services[name]["healthcheck"]["test"]
    assert check[0] in ("CMD", "CMD-SHELL")
    assert len(check) > 1


def test_api_healthcheck_asks_readiness_on_the_port_it_serves(
    services: dict[str, dict[str, Any]],
) -> None:
    api = services["api"]
    port = _option(api["command"], "--port")
    assert f"127.0.0.1:{port}/health/ready" in " ".join(api["healthcheck"]["test"])
    assert f"{port}:{port}" in api["ports"]


def test_worker_healthcheck_asks_the_metrics_port_it_serves(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services["worker"]
    port = _environment(worker)["WORKER_METRICS_PORT"]
    assert f"127.0.0.1:{port}/metrics" in " ".join(worker["healthcheck"]["test"])


def test_app_services_wait_for_a_healthy_redis(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_worker_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker


def test_worker_gets_longer_to_stop_than_its_drain(services: dict[str, dict[str, Any]]) -> None:
    # Docker kills a container that outlives stop_grace_period, jobs still draining included.
    grace = re.fullmatch(r"(\d+)s", services["worker"]["stop_grace_period"])
    assert grace is not None
    assert int(grace[1]) > DRAIN_S


def test_simulator_runs_only_with_the_dev_overlay(services: dict[str, dict[str, Any]]) -> None:
    assert "simulator" not in services


@pytest.mark.parametrize("file", ["docker-compose.yml", "docker-compose.dev.yml"])
def test_depends_on_needs_no_compose_newer_than_2_0(file: str) -> None:
    # `required:` in depends_on is Compose >= 2.20; older v2 releases refuse the file.
    data = yaml.safe_load((ROOT / file).read_text())
    for name, service in data["services"].items():
        for dependency in (service.get("depends_on") or {}).values():
            assert "required" not in dependency, name


def test_image_runs_the_console_script_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    entrypoints = re.findall(r"^ENTRYPOINT (.+)$", dockerfile, re.MULTILINE)
    script = json.loads(entrypoints[-1])[0]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert script in scripts
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users
    assert users[-1] not in ("root", "0")


def test_the_image_builds_its_wheel_with_the_build_hook_and_a_compiler() -> None:
    # The wheel's build hook (hatch_build.py) compiles the hot path: the build stage must copy
    # the hook and start from an image that has gcc (the -slim images have none).
    dockerfile = (ROOT / "Dockerfile").read_text()
    build_stage = dockerfile.split("\nFROM ")[1]  # the text after the first FROM line's "FROM "
    assert re.match(r"python:3\.\d+ AS build\n", build_stage)
    copied = " ".join(re.findall(r"^COPY (.+)$", build_stage, re.MULTILINE))
    assert "hatch_build.py" in copied
    hooks = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    assert "custom" in hooks["targets"]["wheel"]["hooks"]


def test_the_build_context_holds_every_file_the_dockerfile_copies() -> None:
    # .dockerignore excludes everything but what it re-includes with "!".
    dockerfile = (ROOT / "Dockerfile").read_text()
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.MULTILINE):
        for source in sources.split():
            assert source.rstrip("/") in allowed, source
