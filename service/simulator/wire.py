"""The simulator's own reading of Monite's JSON shapes (requests, tasks, pages, tokens, errors).

Deliberately independent of ``service.domain``: if the two readings of Monite's reference disagree,
the decoding tests notice.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal, TypeVar

import msgspec
from litestar import Response

JSON: Final = "application/json"
MONITE_API_VERSION: Final = "2024-05-25"
"""The ``api_version`` of events about tasks created through ``/_sim`` (no request header)."""

TaskStatus = Literal["processing", "success", "error"]
DocumentType = Literal["invoice", "credit_note", "receipt"]
DOCUMENT_TYPES: Final[tuple[DocumentType, ...]] = ("invoice", "credit_note", "receipt")
TASK_STATUSES: Final[tuple[TaskStatus, ...]] = ("processing", "success", "error")


SIMULATED_OCR_ERROR: Final = (
    "simulated by the ocr-relay Monite simulator (SIM_OCR_ERROR_RATE, SIM_ERROR_IDS or a /_sim "
    "request), not a real OCR failure"
)


class TaskBody(msgspec.Struct, kw_only=True):
    """``OcrTaskResponseSchema``; ``recognized_data`` is pre-encoded JSON served verbatim.

    ``error`` is the simulator's own addition (Monite's schema has no such field, and clients
    accept unknown fields): an ``error`` task says it was the simulator's doing, so nobody hunts
    a bug behind a failure that chaos made.
    """

    id: str
    created_at: str
    updated_at: str
    status: TaskStatus
    document_type: DocumentType | msgspec.UnsetType = msgspec.UNSET
    recognized_data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    error: ErrorDetail | msgspec.UnsetType = msgspec.UNSET


class TaskPage(msgspec.Struct, kw_only=True):
    """``OCRTasksPaginationResponse``."""

    data: list[TaskBody]
    prev_pagination_token: str | None = None
    next_pagination_token: str | None = None


class CreateOcrTask(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``CreateOCRRequestPayload``, the body of ``POST /v1/ocr_tasks``."""

    file_url: str
    document_type: DocumentType | None = None


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``ObtainTokenPayload``, the body of ``POST /v1/auth/token``."""

    grant_type: Literal["client_credentials", "entity_user"]
    client_id: str
    client_secret: str
    entity_user_id: str | None = None


class RevokeRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The body of ``POST /v1/auth/revoke``."""

    client_id: str
    client_secret: str
    token: str


class TokenResponse(msgspec.Struct, kw_only=True):
    """``AccessTokenResponse``."""

    access_token: str
    expires_in: int
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a token kind, not a secret


class MessageBody(msgspec.Struct):
    """``MessageResponse``."""

    message: str


class ErrorDetail(msgspec.Struct, kw_only=True):
    """The inner object of ``ErrorSchemaResponse``."""

    message: str
    type: str | msgspec.UnsetType = msgspec.UNSET


class ErrorBody(msgspec.Struct):
    """``ErrorSchemaResponse``: ``{"error": {"message": ...}}``."""

    error: ErrorDetail


class ValidationIssue(msgspec.Struct):
    """One item of FastAPI's ``HTTPValidationError.detail``."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationBody(msgspec.Struct):
    """``HTTPValidationError``, Monite's 422 body."""

    detail: list[ValidationIssue]


_ENCODER: Final = msgspec.json.Encoder()
T = TypeVar("T")


def json_response(
    body: msgspec.Struct | list[Any] | dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    """A JSON response with a body encoded by msgspec (fast; keeps ``Raw`` fields verbatim)."""
    return Response(_ENCODER.encode(body), status_code=status, media_type=JSON, headers=headers)


def error_response(
    status: int, message: str, *, kind: str | None = None, headers: dict[str, str] | None = None
) -> Response[bytes]:
    """An ``ErrorSchemaResponse`` with the given status."""
    detail = ErrorDetail(message=message, type=msgspec.UNSET if kind is None else kind)
    return json_response(ErrorBody(error=detail), status, headers)


def validation_response(loc: list[str | int], msg: str, kind: str) -> Response[bytes]:
    """A 422 ``HTTPValidationError`` naming one faulty location."""
    return json_response(ValidationBody(detail=[ValidationIssue(loc, msg, kind)]), 422)


_PATH: Final = re.compile(r" - at `\$(.*)`$")
_STEP: Final = re.compile(r"\.(\w+)|\[(\d+)\]")


def decode_body(body: bytes, into: type[T]) -> T | Response[bytes]:
    """Decode a JSON request body, or a 422 in FastAPI's shape saying where it is wrong."""
    try:
        return msgspec.json.decode(body, type=into)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _PATH.search(text)
        loc: list[str | int] = ["body"]
        if match:
            for name, index in _STEP.findall(match.group(1)):
                loc.append(name if name else int(index))
            text = text[: match.start()]
        if text.startswith("Object missing required field `"):
            loc.append(text.split("`")[1])
            return validation_response(loc, "Field required", "missing")
        return validation_response(loc, text, "value_error")
    except msgspec.DecodeError:
        return validation_response(["body"], "JSON decode error", "json_invalid")
