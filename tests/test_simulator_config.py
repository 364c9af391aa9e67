"""Simulator configuration from the environment, the generated documents, and the CLI command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import msgspec
import pytest

from service.settings import DEV_MONITE_CLIENT_ID, DEV_MONITE_CLIENT_SECRET, SettingsError
from service.simulator import SIMULATOR_ENV_VARS, SimulatorConfig
from service.simulator.documents import generate


def test_defaults_use_the_dev_credentials() -> None:
    config = SimulatorConfig.from_env({})
    assert (config.client_id, config.client_secret) == (
        DEV_MONITE_CLIENT_ID,
        DEV_MONITE_CLIENT_SECRET,
    )
    assert config.knobs.rate_limit == 30
    assert config.knobs.task_duration_s == (3.0, 15.0)


def test_environment_sets_knobs_and_chaos() -> None:
    config = SimulatorConfig.from_env(
        {
            "SIM_TASK_DURATION_S": "0",
            "SIM_RATE_LIMIT": "12",
            "SIM_ERROR_RATE": "0.25",
            "SIM_ERROR_IDS": "2B9F1C3E-7A41-4D2A-9A51-0C7C1F5E8D10",
            "SIM_LIST_OMIT_IDS": "2B9F1C3E-7A41-4D2A-9A51-0C7C1F5E8D10, ",
            "SIM_GET_LATENCY_S": "2.5",
        }
    )
    assert config.knobs.task_duration_s == (0.0, 0.0)
    assert (config.knobs.rate_limit, config.knobs.rate_burst) == (12.0, 12.0)
    assert (config.chaos.error_rate, config.chaos.get_latency_s) == (0.25, 2.5)
    assert config.chaos.error_ids == {"2b9f1c3e-7a41-4d2a-9a51-0c7c1f5e8d10"}
    assert config.chaos.list_omit_ids == config.chaos.error_ids


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SIM_TASK_DURATION_S", "15-3"),
        ("SIM_TASK_DURATION_S", "soon"),
        ("SIM_RATE_LIMIT", "0"),
        ("SIM_ERROR_RATE", "1.5"),
        ("SIM_SEED", "x"),
        ("SIM_WEBHOOK_URL", "ftp://hooks"),
        ("SIM_NOT_FOUND_IDS", "abc"),
        ("SIM_NAIVE_TIMESTAMP_RATE", "2"),
        ("SIM_LIST_OMIT_IDS", "abc"),
        ("SIM_LIST_OMIT_RATE", "often"),
        ("SIM_GET_LATENCY_S", "-1"),
    ],
)
def test_malformed_variable_raises_settings_error_naming_it(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        SimulatorConfig.from_env({variable: value})
    assert caught.value.variable == variable


def test_env_var_list_names_every_variable_read() -> None:
    assert {"MONITE_CLIENT_ID", "MONITE_CLIENT_SECRET", "SIM_RATE_LIMIT", "SIM_SEED"} <= set(
        SIMULATOR_ENV_VARS
    )
    assert all(v.startswith(("SIM_", "MONITE_CLIENT_")) for v in SIMULATOR_ENV_VARS)


def test_config_repr_hides_the_secret() -> None:
    assert "simulator-secret" not in repr(SimulatorConfig())


def test_same_seed_and_task_give_the_same_document() -> None:
    first = generate(3, "t-1", "invoice", mismatch_rate=0.1, sparse_rate=0.1)
    again = generate(3, "t-1", "invoice", mismatch_rate=0.1, sparse_rate=0.1)
    other = generate(4, "t-1", "invoice", mismatch_rate=0.1, sparse_rate=0.1)
    assert first == again != other


def test_consistent_documents_add_up_in_their_currency() -> None:
    exponents = {"JPY": 0, "KWD": 3, "BHD": 3}
    for index in range(200):
        doc = msgspec.json.decode(
            generate(1, f"t-{index}", "invoice", mismatch_rate=0.0, sparse_rate=0.0)
        )
        scale = 10 ** exponents.get(doc["currency"], 2)
        lines = sum(round(item["subtotal"] * scale) for item in doc["line_items"])
        assert lines == round(doc["subtotal"] * scale)
        assert round(doc["subtotal"] * scale) + round(doc["tax_amount"] * scale) == round(
            doc["total_amount"] * scale
        )


def test_consistent_documents_carry_valid_ibans() -> None:
    for index in range(100):
        doc = msgspec.json.decode(
            generate(1, f"t-{index}", "credit_note", mismatch_rate=0.0, sparse_rate=0.0)
        )
        iban = (doc["sender"]["bank_account"].get("iban") or "").replace(" ", "")
        assert not iban or _iban_valid(iban)


def _iban_valid(iban: str) -> bool:
    return int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 == 1


def test_mismatch_rate_one_breaks_some_sum_or_iban() -> None:
    broken = 0
    for index in range(50):
        doc = msgspec.json.decode(
            generate(1, f"t-{index}", "invoice", mismatch_rate=1.0, sparse_rate=0.0)
        )
        lines = sum(item["subtotal"] for item in doc["line_items"])
        sums_off = (
            abs(lines - doc["subtotal"]) > 1e-9
            or abs(doc["subtotal"] + doc["tax_amount"] - doc["total_amount"]) > 1e-6
        )
        iban = doc["sender"]["bank_account"].get("iban", "").replace(" ", "")
        broken += sums_off or (bool(iban) and not _iban_valid(iban))
    assert broken == 50


def test_receipts_have_no_recipient_and_a_datetime() -> None:
    doc = msgspec.json.decode(generate(1, "r", "receipt", mismatch_rate=0.0, sparse_rate=0.0))
    assert "recipient" not in doc
    assert "T" in doc["issued_at"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_cli_serves_the_simulator_standalone() -> None:
    port = _free_port()
    env = {**os.environ, "SIM_SEED": "5"}
    command = [sys.executable, "-m", "service.cli", "simulator", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    try:
        status = 0
        for _ in range(100):
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/_sim/counters").status_code
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert status == 200
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_cli_refuses_a_malformed_variable_with_exit_code_2() -> None:
    env = {**os.environ, "SIM_RATE_LIMIT": "fast"}
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "simulator", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "SIM_RATE_LIMIT" in result.stderr
