"""``ocr-relay normalize PATH|-`` through the real CLI entry point."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from service.cli import main
from tests.test_normalize import EXAMPLES, shared_fixture


def test_prints_the_normalized_document(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["normalize", str(shared_fixture("monite", "ocr_task_invoice_de.json"))])
    out = capsys.readouterr().out
    expected = json.loads(EXAMPLES["invoice_de"].read_text())["data"]["document"]
    expected["source"]["entity_id"] = None  # a file carries no entity
    assert (code, json.loads(out)) == (0, expected)


def test_shows_the_tax_breakdown_and_the_parsed_terms(capsys: pytest.CaptureFixture[str]) -> None:
    main(["normalize", str(shared_fixture("monite", "ocr_task_invoice_de.json"))])
    document = json.loads(capsys.readouterr().out)
    assert document["terms"] == {"net_days": 30, "discount_percent": None, "discount_days": None}
    assert document["tax_breakdown"] == [
        {
            "rate": "19",
            "taxable": {"amount": "1250.00", "minor": 125000, "currency": "EUR"},
            "tax": {"amount": "237.50", "minor": 23750, "currency": "EUR"},
        }
    ]


def test_reads_the_task_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = shared_fixture("monite", "ocr_task_receipt_at.json").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(body)))
    code = main(["normalize", "-"])
    assert (code, json.loads(capsys.readouterr().out)["kind"]) == (0, "receipt")


def test_raw_flag_attaches_recognized_data(capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_fixture("monite", "ocr_task_invoice_sparse.json")
    main(["normalize", "--raw", str(path)])
    raw = json.loads(capsys.readouterr().out)["raw"]
    assert raw == json.loads(path.read_text())["recognized_data"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read"),
        (b"\xff\xfe not json", "not a Monite OCR task"),
        (b'{"id": 42}', "not a Monite OCR task"),
        (shared_fixture("monite", "ocr_task_processing.json").read_bytes(), "'processing'"),
        (shared_fixture("monite", "ocr_task_error.json").read_bytes(), "'error'"),
    ],
    ids=["missing-file", "not-json", "wrong-type", "processing", "error"],
)
def test_bad_input_prints_one_line_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, reason: str
) -> None:
    path = tmp_path / "task.json"
    if content is not None:
        path.write_bytes(content)
    code = main(["normalize", str(path)])
    captured = capsys.readouterr()
    assert (code, captured.out) == (1, "")
    assert captured.err.count("\n") == 1
    assert reason in captured.err
    assert "Traceback" not in captured.err
