"""ocr-relay: watches Monite OCR tasks and delivers normalized, signed results to callbacks.

What a receiver in Python imports: ``verify_signature`` to check a delivery, and the event Structs
to decode it (``msgspec.json.decode(body, type=Event)``).
"""

from service.domain.schema import (
    SCHEMA_VERSION,
    CreditNoteDocument,
    Event,
    EventData,
    EventError,
    InvoiceDocument,
    Money,
    NormalizedDocument,
    ReceiptDocument,
)
from service.domain.signing import SignatureError, verify_signature

__all__ = [
    "SCHEMA_VERSION",
    "CreditNoteDocument",
    "Event",
    "EventData",
    "EventError",
    "InvoiceDocument",
    "Money",
    "NormalizedDocument",
    "ReceiptDocument",
    "SignatureError",
    "verify_signature",
]
