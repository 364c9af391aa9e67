"""Monite's OCR API as ocr-relay uses it; callers import from here.

``client`` (the OCR task endpoints) sends through ``transport`` (one request within ``budget``, the
rate budget every process shares) with the access token of ``token`` (shared through Redis), and
answers with the typed ``results``.
"""

from service.monite.client import PAGE_LIMIT, MoniteClient
from service.monite.results import (
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
)
from service.monite.transport import build_monite_http, credentials_id

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
