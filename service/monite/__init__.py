"""Monite's OCR API as ocr-relay uses it: the client (``client``), the rate budget every process
shares (``budget``). Callers import from here."""

from service.monite.client import (
    PAGE_LIMIT,
    MoniteClient,
    MoniteFailure,
    MoniteListOk,
    MoniteListResult,
    MoniteNotFound,
    MoniteOk,
    MoniteRateLimited,
    MoniteRejected,
    MoniteResult,
    MoniteUnauthorized,
    MoniteUnavailable,
    build_monite_http,
    credentials_id,
)

__all__ = [
    "PAGE_LIMIT",
    "MoniteClient",
    "MoniteFailure",
    "MoniteListOk",
    "MoniteListResult",
    "MoniteNotFound",
    "MoniteOk",
    "MoniteRateLimited",
    "MoniteRejected",
    "MoniteResult",
    "MoniteUnauthorized",
    "MoniteUnavailable",
    "build_monite_http",
    "credentials_id",
]
