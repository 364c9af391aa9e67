"""The published event schema: fresh, valid for every event we build, and exact on the wire."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from service.domain.events import encode_event, failed_event, recognized_event
from service.domain.monite_models import decode_task
from service.domain.normalize import NormalizeContext, normalize
from service.domain.schema import SCHEMA_VERSION, event_json_schema, render_event_json_schema
from tests.test_normalize import EXAMPLES, shared_fixture

COMMITTED_SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "event-schema.json"
REGENERATE = ".venv/bin/python -m service.domain > docs/event-schema.json"


def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        event_json_schema(), format_checker=jsonschema.FormatChecker()
    )


def _event_from_fixture(name: str) -> tuple[bytes, dict[str, Any]]:
    """Our event for a shared Monite fixture, built with the expected event's watch fields."""
    expected = json.loads(EXAMPLES[name].read_text())
    data = expected["data"]
    task = decode_task(shared_fixture("monite", f"ocr_task_{name}.json").read_bytes())
    document = normalize(task, NormalizeContext(task_id=task.id, entity_id=data["entity_id"]))
    event = recognized_event(
        watch_id=data["watch_id"],
        task_id=data["task_id"],
        entity_id=data["entity_id"],
        metadata=data["metadata"],
        document=document,
        at=datetime.fromisoformat(expected["timestamp"]),
    )
    return encode_event(event), expected


def test_committed_schema_is_fresh() -> None:
    committed = COMMITTED_SCHEMA.read_bytes() if COMMITTED_SCHEMA.exists() else b""
    assert committed == render_event_json_schema(), f"stale schema; run: {REGENERATE}"


def test_regeneration_command_prints_the_schema_without_warnings() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "service.domain"],
        cwd=COMMITTED_SCHEMA.parents[1],
        capture_output=True,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == render_event_json_schema()


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(event_json_schema())


@pytest.mark.parametrize("name", EXAMPLES)
def test_recognized_event_equals_the_expected_event(name: str) -> None:
    body, expected = _event_from_fixture(name)
    assert json.loads(body) == expected


@pytest.mark.parametrize("name", EXAMPLES)
def test_recognized_event_validates_against_the_schema(name: str) -> None:
    body, _ = _event_from_fixture(name)
    _validator().validate(json.loads(body))


def test_failed_event_equals_the_shared_example() -> None:
    expected = json.loads(shared_fixture("normalized", "ocr_failed.event.json").read_text())
    event = failed_event(
        watch_id=expected["data"]["watch_id"],
        task_id=expected["data"]["task_id"],
        entity_id=expected["data"]["entity_id"],
        metadata={},
        code="ocr_error",
        message="Monite reported status 'error' for this OCR task",
        at=datetime(2026, 11, 20, 10, 16, 10, 999_999, tzinfo=UTC),
    )
    body = encode_event(event)
    _validator().validate(json.loads(body))
    assert json.loads(body) == expected


def test_event_timestamp_is_utc_in_whole_seconds() -> None:
    event = failed_event(
        watch_id="w",
        task_id="t",
        entity_id=None,
        metadata={},
        code="deadline_exceeded",
        message="m",
        at=datetime(2026, 11, 20, 11, 15, 12, 500_000, tzinfo=timezone(timedelta(hours=1))),
    )
    assert json.loads(encode_event(event))["timestamp"] == "2026-11-20T10:15:12Z"


def test_naive_event_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        failed_event(
            watch_id="w",
            task_id="t",
            entity_id=None,
            metadata={},
            code="ocr_error",
            message="m",
            at=datetime(2026, 11, 20, 10, 15, 12),
        )


def test_encoded_event_is_compact_json() -> None:
    body, _ = _event_from_fixture("invoice_sparse")
    assert b"\n" not in body
    assert b'": ' not in body


def test_event_kind_sets_event_type() -> None:
    types = {json.loads(_event_from_fixture(name)[0])["type"] for name in EXAMPLES}
    assert types == {"invoice.recognized", "credit_note.recognized", "receipt.recognized"}


def test_schema_names_the_schema_version() -> None:
    assert SCHEMA_VERSION in event_json_schema()["title"]


def test_schema_rejects_a_float_amount() -> None:
    body, _ = _event_from_fixture("invoice_de")
    event = json.loads(body)
    event["data"]["document"]["total"]["amount"] = 1487.5
    assert not _validator().is_valid(event)


def test_the_schema_says_a_receipt_time_without_offset_is_local_and_accepts_it() -> None:
    issued_at = event_json_schema()["$defs"]["ReceiptDocument"]["properties"]["issued_at"]
    assert "local time" in issued_at["description"]
    assert "not UTC" in issued_at["description"]
    for value in ("2026-11-22T18:47:31", "2026-11-22T18:47:31+01:00", "2026-11-22T17:47:31Z"):
        jsonschema.validate(value, issued_at, format_checker=jsonschema.FormatChecker())
