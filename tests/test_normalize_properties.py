"""Property-based: any well-typed Monite payload normalizes, encodes, and matches the schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import jsonschema
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.domain.events import encode_event, recognized_event
from service.domain.money import currency_exponent
from service.domain.monite_models import decode_task
from service.domain.normalize import NormalizeContext, normalize
from service.domain.schema import Money, event_json_schema
from tests.test_payment_terms import NOT_UNDERSTOOD, UNDERSTOOD

_AT = datetime(2026, 11, 20, 10, 15, 12, tzinfo=UTC)
_encoder = msgspec.json.Encoder(decimal_format="number")
_validator = jsonschema.Draft202012Validator(event_json_schema())
_PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

numbers = st.one_of(
    st.none(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(min_value=-(10**9), max_value=10**9, places=2),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(10**20), max_value=10**20),
)
texts = st.one_of(st.none(), st.text(max_size=30))
dates = st.one_of(
    texts,
    st.dates().map(str),
    st.dates().map(lambda d: d.strftime("%d.%m.%Y")),
    st.dates().map(lambda d: d.strftime("%m/%d/%Y")),
    st.dates().map(lambda d: d.strftime("%d %B %Y")),
    st.datetimes().map(lambda d: d.isoformat()),
)
currencies = st.one_of(
    st.none(),
    st.sampled_from(["EUR", "JPY", "KWD", "BHD", "XYZ", "eur", "", "BGN"]),
    st.text(max_size=4),
)
addresses = st.fixed_dictionaries(
    {},
    optional={
        "street_and_number": texts,
        "city": texts,
        "postal_code": texts,
        "state": texts,
        "country": st.one_of(texts, st.sampled_from(["DE", "de", "IC", "EA", "AN", "QQ"])),
    },
)
banks = st.fixed_dictionaries(
    {},
    optional={
        "iban": st.one_of(
            texts, st.sampled_from(["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432"])
        ),
        "swift_bic": st.one_of(texts, st.sampled_from(["COBADEFFXXX", "NWBKGB2L"])),
        "bank_account_number": texts,
    },
)
counterparts = st.fixed_dictionaries(
    {"address": addresses, "bank_account": banks},
    optional={"name": texts, "email": texts, "tax_number": texts, "vat_number": texts},
)
line_items = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "name": texts,
            "description": texts,
            "quantity": numbers,
            "unit": texts,
            "unit_price": numbers,
            "subtotal": numbers,
            "tax_rate": numbers,
            "tax_amount": numbers,
            "total_amount": numbers,
            "line_reference": texts,
            "discount_amount": numbers,
        },
    ),
    max_size=4,
)
_common = {
    "document_number": texts,
    "currency": currencies,
    "subtotal": numbers,
    "tax_rate": numbers,
    "tax_amount": numbers,
    "total_amount": numbers,
    "line_items": line_items,
    "unknown_extra": texts,
}
recognized = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("invoice"), "sender": counterparts, "recipient": counterparts},
        optional={
            **_common,
            "issue_date": dates,
            "due_date": dates,
            "payment_terms": st.one_of(texts, st.sampled_from([*UNDERSTOOD, *NOT_UNDERSTOOD])),
            "amount_paid": numbers,
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("credit_note"), "sender": counterparts, "recipient": counterparts},
        optional={**_common, "issue_date": dates, "original_invoice_number": texts},
    ),
    st.fixed_dictionaries(
        {"type": st.just("receipt"), "sender": counterparts},
        optional={**_common, "issued_at": dates, "discount": numbers, "tax_type": texts},
    ),
)


def _body(data: dict[str, Any]) -> bytes:
    task = {
        "id": "t-1",
        "created_at": "2026-11-20T10:15:00Z",
        "updated_at": "2026-11-20T10:15:11Z",
        "status": "success",
        "recognized_data": data,
    }
    return _encoder.encode(task)


def _event_body(body: bytes) -> bytes:
    document = normalize(
        decode_task(body), NormalizeContext(task_id="t-1", include_raw=True, body=body)
    )
    event = recognized_event(
        watch_id="w", task_id="t-1", entity_id=None, metadata={}, document=document, at=_AT
    )
    return encode_event(event)


def _no_float(text: str) -> Any:
    raise AssertionError(f"float {text} in the normalized output")


def _moneys(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node] if set(node) == set(Money.__struct_fields__) else []
        for key, value in node.items():
            if key != "raw":
                found += _moneys(value)
        return found
    if isinstance(node, list):
        return [m for item in node for m in _moneys(item)]
    return []


@_PROPERTY
@given(recognized)
def test_any_well_typed_payload_normalizes_to_a_schema_valid_event(data: dict[str, Any]) -> None:
    event = json.loads(_event_body(_body(data)))
    _validator.validate(event)


@_PROPERTY
@given(recognized)
def test_output_has_no_float_outside_raw(data: dict[str, Any]) -> None:
    event = json.loads(_event_body(_body(data)))
    document = event["data"]["document"]
    document.pop("raw", None)
    json.loads(json.dumps(document), parse_float=_no_float)


@_PROPERTY
@given(recognized)
def test_minor_always_equals_amount_scaled(data: dict[str, Any]) -> None:
    event = json.loads(_event_body(_body(data)))
    for money in _moneys(event["data"]["document"]):
        if money["minor"] is None:
            continue
        exponent = currency_exponent(money["currency"])
        assert exponent is not None
        amount = Decimal(money["amount"])
        assert amount.as_tuple().exponent == -exponent
        assert amount.scaleb(exponent) == money["minor"]


@_PROPERTY
@given(
    st.decimals(min_value=-(10**12), max_value=10**12, places=3),
    st.sampled_from(["EUR", "JPY", "KWD"]),
)
def test_amount_is_the_exact_decimal_rounded_half_up(value: Decimal, currency: str) -> None:
    # A float detour would round 1.005 down (it is 1.00499999999999989… as a double).
    body = _body({"type": "invoice", "sender": {}, "currency": currency, "total_amount": value})
    total = json.loads(_event_body(body))["data"]["document"]["total"]
    exponent = currency_exponent(currency)
    assert exponent is not None
    expected = value.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_UP)
    assert Decimal(total["amount"]) == expected


cents = st.decimals(min_value=-(10**9), max_value=10**9, places=2)
taxed_lines = st.lists(
    st.fixed_dictionaries(
        {"subtotal": cents, "tax_rate": st.sampled_from([0, 5.5, 7, 7.7, 10, 19, 20, 21, 25])},
        optional={"tax_amount": cents, "name": texts},
    ),
    min_size=1,
    max_size=8,
)


@_PROPERTY
@given(taxed_lines, st.sampled_from(["EUR", "JPY", "KWD"]), numbers)
def test_breakdown_of_taxed_lines_sums_their_nets_exactly_in_rate_order(
    lines: list[dict[str, Any]], currency: str, total: Any
) -> None:
    data = {"type": "invoice", "sender": {}, "currency": currency, "total_amount": total}
    event = json.loads(_event_body(_body({**data, "line_items": lines})))
    document = event["data"]["document"]
    breakdown = document["tax_breakdown"]
    nets = [line["subtotal"]["minor"] for line in document["line_items"]]
    assert sum(entry["taxable"]["minor"] for entry in breakdown) == sum(nets)
    rates = [Decimal(entry["rate"]) for entry in breakdown]
    assert rates == sorted(set(rates))
    for entry in breakdown:
        assert type(entry["taxable"]["minor"]) is type(entry["tax"]["minor"]) is int
