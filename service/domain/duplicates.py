"""The duplicate hint: which recognized documents count as the same, and how one is flagged.

Pure: the lookup of an earlier document with the same fingerprint (per API client, within the
watch retention) belongs to the store; this module only names the fingerprint and adds the
``possible_duplicate`` warning.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import TypeVar

import msgspec

from service.domain.schema import (
    CreditNoteDocument,
    DocumentWarning,
    InvoiceDocument,
    NormalizedDocument,
    RelatedEvent,
)

_Document = TypeVar("_Document", bound=NormalizedDocument)
# Separates the parts of a fingerprint; no recognized text keeps it (``_key`` drops controls).
_SEPARATOR = "\x1f"


def duplicate_fingerprint(document: NormalizedDocument) -> str | None:
    """A digest of kind, seller, document number and total; ``None`` when one is missing.

    The seller is its VAT number when printed, else its name; both compared without case,
    spaces or punctuation. Receipts have none (a shop prints the same total again and again).
    A digest, so that the store's keys carry no seller names or numbers.
    """
    if not isinstance(document, InvoiceDocument | CreditNoteDocument):
        return None
    seller = document.seller
    total = document.total
    if seller is None or total is None:
        return None
    seller_key = _key(seller.vat_number) or _key(seller.name)
    number = _key(document.document_number)
    if seller_key is None or number is None:
        return None
    parts = (document.__struct_config__.tag, seller_key, number, total.currency or "", total.amount)
    return hashlib.sha256(_SEPARATOR.join(str(part) for part in parts).encode()).hexdigest()


def with_possible_duplicate(document: _Document, related: RelatedEvent) -> _Document:
    """``document`` with a ``possible_duplicate`` warning pointing at the earlier ``related``."""
    warning = DocumentWarning(
        code="possible_duplicate",
        field="document_number",
        message=(
            "the same seller, document number and total were received before "
            f"(event {related.event_id})"
        ),
        related=related,
    )
    return msgspec.structs.replace(document, warnings=[*document.warnings, warning])


def _key(text: str | None) -> str | None:
    """Letters and digits only, case-folded: ``"Müller GmbH."`` and ``"MÜLLER  GMBH"`` agree."""
    if text is None:
        return None
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(c for c in folded if c.isalnum()) or None
