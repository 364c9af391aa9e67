"""The ``ocr-relay`` console script, run as a real subprocess."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.conftest import TEST_REDIS_URL, cli_env

COMMANDS = ("api", "worker", "simulator", "dev", "dev-inbox", "normalize", "hash-key", "inspect")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m service.cli`` with the configuration variables of this shell removed."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=cli_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


def test_console_script_is_installed_beside_the_interpreter() -> None:
    script = Path(sys.executable).parent / "ocr-relay"
    result = subprocess.run(
        [script, "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: ocr-relay")


def test_no_command_is_a_usage_error() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "COMMAND" in result.stderr


@pytest.mark.parametrize(
    ("command", "option"),
    [
        ("api", "--port"),
        ("simulator", "--port"),
        ("dev", "--port"),
        ("dev", "--simulator-port"),
        ("dev", "--inbox-port"),
        ("dev-inbox", "--port"),
    ],
)
@pytest.mark.parametrize("port", ["99999", "0", "-5", "http", "²"])
def test_a_port_out_of_range_is_a_usage_error_naming_the_option(
    command: str, option: str, port: str
) -> None:
    result = run_cli(command, f"{option}={port}")
    assert result.returncode == 2
    assert f"argument {option}: '{port}' is not a port number (1-65535)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["api", "worker", "dev", "inspect"])
def test_malformed_redis_url_is_one_line_naming_the_variable(command: str) -> None:
    args = [command, "wat_x"] if command == "inspect" else [command]
    result = run_cli(*args, env={"REDIS_URL": "nope"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "REDIS_URL" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_malformed_redis_url_error_does_not_echo_its_password() -> None:
    result = run_cli("api", env={"REDIS_URL": "http://ops:s3cret-pw@cache:6379/0"})
    assert result.returncode == 2
    assert "REDIS_URL" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_configuration_error_does_not_echo_a_secret() -> None:
    result = run_cli("api", env={"MONITE_CLIENT_SECRET": "s3cret-value"})
    assert result.returncode == 2
    assert "MONITE_CLIENT_ID" in result.stderr
    assert "s3cret-value" not in result.stderr + result.stdout


async def test_a_burst_worker_exits_once_the_queue_is_empty(redis: Redis, key_prefix: str) -> None:
    env = {"REDIS_URL": TEST_REDIS_URL, "REDIS_KEY_PREFIX": key_prefix}
    result = await asyncio.to_thread(run_cli, "worker", "--burst", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "worker stopped" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
