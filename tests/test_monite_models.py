"""Decoding Monite's OCR payloads: tolerant of additions, strict on types, safe on hostile input."""

from __future__ import annotations

import json
import typing
from typing import Any

import msgspec
import pytest
from monite.types.ocr_counterpart_details import OcrCounterpartDetails
from monite.types.ocr_credit_note import OcrCreditNote as SdkCreditNote
from monite.types.ocr_invoice import OcrInvoice as SdkInvoice
from monite.types.ocr_line_item import OcrLineItem as SdkLineItem
from monite.types.ocr_receipt import OcrReceipt as SdkReceipt
from monite.types.ocr_task_response_schema import OcrTaskResponseSchema

from service.domain.monite_models import (
    KNOWN_STATUSES,
    MAX_LINE_ITEMS,
    MAX_TASK_BYTES,
    MAX_TEXT_CHARS,
    OcrCounterpart,
    OcrCreditNote,
    OcrInvoice,
    OcrLineItem,
    OcrReceipt,
    OcrTask,
    decode_page,
    decode_task,
    is_known_status,
    is_terminal,
    raw_recognized_data,
)
from tests.test_normalize import shared_fixture


def _invoice_task() -> dict[str, Any]:
    task: dict[str, Any] = json.loads(
        shared_fixture("monite", "ocr_task_invoice_de.json").read_text()
    )
    return task


def _decode(task: dict[str, Any]) -> OcrTask:
    return decode_task(json.dumps(task).encode())


@pytest.mark.parametrize(
    ("ours", "sdk"),
    [
        (OcrTask, OcrTaskResponseSchema),
        (OcrInvoice, SdkInvoice),
        (OcrCreditNote, SdkCreditNote),
        (OcrReceipt, SdkReceipt),
        (OcrCounterpart, OcrCounterpartDetails),
        (OcrLineItem, SdkLineItem),
    ],
)
def test_every_field_we_read_exists_in_monites_sdk(ours: type[msgspec.Struct], sdk: Any) -> None:
    assert set(ours.__struct_fields__) - NOT_MONITES.get(ours, set()) <= set(sdk.model_fields)


# Read although Monite's schema lacks them: the simulator's reason for a failure it made up.
NOT_MONITES: dict[type[msgspec.Struct], set[str]] = {OcrTask: {"error"}}


def test_invoice_fixture_decodes_amounts_as_their_json_text() -> None:
    data = decode_task(shared_fixture("monite", "ocr_task_invoice_de.json").read_bytes())
    assert isinstance(data.recognized_data, OcrInvoice)
    assert bytes(data.recognized_data.total_amount) == b"1487.5"


def test_absent_and_null_amounts_decode_as_null() -> None:
    task = _invoice_task()
    task["recognized_data"]["subtotal"] = None
    del task["recognized_data"]["tax_amount"]
    data = _decode(task).recognized_data
    assert isinstance(data, OcrInvoice)
    assert (bytes(data.subtotal), bytes(data.tax_amount)) == (b"null", b"null")


def test_list_page_decodes_with_its_token() -> None:
    page = decode_page(shared_fixture("monite", "ocr_tasks_list_page.json").read_bytes())
    assert [task.status for task in page.data] == ["processing", "success", "error"]
    assert page.next_pagination_token == "eyJvcmRlciI6ImFzYyIsImxpbWl0IjozLCJwYWdlIjoyfQ"


def test_unknown_fields_at_every_level_are_ignored() -> None:
    task = _invoice_task()
    task["new_top_level"] = {"x": [1, 2]}
    task["recognized_data"]["confidence"] = 0.93
    task["recognized_data"]["sender"]["address"]["geo"] = {"lat": 1}
    task["recognized_data"]["line_items"][0]["sku"] = "X"
    assert _decode(task).recognized_data == _decode(_invoice_task()).recognized_data


def test_unknown_enum_values_decode_as_strings() -> None:
    task = _invoice_task()
    task["status"] = "queued"
    task["document_type"] = "purchase_order"
    task["recognized_data"]["currency"] = "XCG"
    task["recognized_data"]["sender"]["address"]["country"] = "ZZ"
    decoded = _decode(task)
    assert isinstance(decoded.recognized_data, OcrInvoice)
    assert (decoded.status, decoded.document_type, decoded.recognized_data.currency) == (
        "queued",
        "purchase_order",
        "XCG",
    )


def test_only_success_and_error_are_terminal() -> None:
    assert [is_terminal(s) for s in ("success", "error", "processing", "queued")] == [
        True,
        True,
        False,
        False,
    ]


def test_unknown_status_is_reported_as_unknown() -> None:
    assert (is_known_status("processing"), is_known_status("queued")) == (True, False)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("total_amount",), "lots"),
        (("currency",), 978),
        (("line_items",), {"name": "not a list"}),
        (("sender", "address"), "Berlin"),
        (("line_items", 0, "quantity"), True),
        (("line_items", 0, "total_amount"), [1]),
        (("line_items", 0, "unit_price"), {"value": 1}),
        (("amount_paid",), False),
        (("issue_date",), 20261101),
    ],
)
def test_wrong_type_in_recognized_data_fails_validation(path: tuple[Any, ...], value: Any) -> None:
    task = _invoice_task()
    target = task["recognized_data"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(msgspec.ValidationError):
        _decode(task)


def test_wrong_type_of_a_number_is_located_in_the_message() -> None:
    task = _invoice_task()
    task["recognized_data"]["line_items"][1]["tax_rate"] = "19 %"
    with pytest.raises(msgspec.ValidationError) as error:
        _decode(task)
    assert str(error.value) == (
        "Expected `number | null`, got `str` - at `$.recognized_data.line_items[1].tax_rate`"
    )


def test_wrong_type_of_a_number_in_a_list_page_fails_validation() -> None:
    page = json.loads(shared_fixture("monite", "ocr_tasks_list_page.json").read_text())
    task = next(task for task in page["data"] if task.get("recognized_data"))
    task["recognized_data"]["total_amount"] = "1487.5"
    with pytest.raises(msgspec.ValidationError, match=r"\$\.data\[\d\]\.recognized_data"):
        decode_page(json.dumps(page).encode())


def test_unknown_document_type_tag_fails_validation() -> None:
    task = _invoice_task()
    task["recognized_data"]["type"] = "purchase_order"
    with pytest.raises(msgspec.ValidationError, match="purchase_order"):
        _decode(task)


def test_deeply_nested_payload_fails_to_decode() -> None:
    body = (
        json.dumps(_invoice_task()).encode()[:-1]
        + b', "x": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}"
    )
    with pytest.raises(msgspec.DecodeError, match="nested"):
        decode_task(body)


def test_oversized_payload_fails_to_decode() -> None:
    with pytest.raises(msgspec.DecodeError, match="exceeds"):
        decode_task(b" " * (MAX_TASK_BYTES + 1))


def test_too_many_line_items_fail_validation() -> None:
    task = _invoice_task()
    task["recognized_data"]["line_items"] = [{}] * (MAX_LINE_ITEMS + 1)
    with pytest.raises(msgspec.ValidationError, match="length"):
        _decode(task)


def test_huge_exponent_decodes_without_expanding() -> None:
    body = json.dumps(_invoice_task()).replace("1487.5", "1e999999999").encode()
    data = decode_task(body).recognized_data
    assert isinstance(data, OcrInvoice)
    assert bytes(data.total_amount) == b"1e999999999"


def test_raw_recognized_data_is_the_received_bytes() -> None:
    body = b'{"id": "t", "recognized_data":  {"type" : "receipt", "x": 1.50} }'
    raw = raw_recognized_data(body)
    assert raw is not None
    assert bytes(raw) == b'{"type" : "receipt", "x": 1.50}'


def test_raw_recognized_data_is_none_while_processing() -> None:
    assert (
        raw_recognized_data(shared_fixture("monite", "ocr_task_processing.json").read_bytes())
        is None
    )


def test_known_statuses_are_exactly_those_of_monites_sdk() -> None:
    status = OcrTaskResponseSchema.model_fields["status"].annotation
    literal = typing.get_args(status)[0]
    assert set(typing.get_args(literal)) == KNOWN_STATUSES


def test_a_text_longer_than_any_printed_field_is_rejected() -> None:
    body = msgspec.json.encode(
        {
            "id": "2b9f1c3e-7a41-4d2a-9a51-0c7c1f5e8d10",
            "created_at": "2026-11-20T10:15:00Z",
            "updated_at": "2026-11-20T10:15:00Z",
            "status": "success",
            "recognized_data": {"type": "invoice", "payment_terms": "x" * (MAX_TEXT_CHARS + 1)},
        }
    )
    with pytest.raises(msgspec.ValidationError, match="payment_terms"):
        decode_task(body)
