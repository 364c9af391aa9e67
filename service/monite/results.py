"""What a call to Monite came to: typed results, never an exception for HTTP or network trouble,
and how an answer is classified into them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, Literal, TypeAlias

import httpx
import msgspec

from service.domain.backoff import parse_retry_after

_MESSAGE_LIMIT: Final = 300


class MoniteOk(msgspec.Struct, frozen=True):
    """A 2xx answer: its status and the raw JSON body (one OCR task object)."""

    status: int
    body: bytes


class MoniteListOk(msgspec.Struct, frozen=True):
    """Every task Monite returned for a list of ids, each the raw JSON of one task object."""

    items: list[bytes]


class MoniteNotFound(msgspec.Struct, frozen=True):
    """404: Monite does not know the task."""


class MoniteRateLimited(msgspec.Struct, frozen=True):
    """No request was answered for rate reasons: a 429 from Monite, or the shared budget
    would have made the call wait longer than ``max_wait_s`` (``source="budget"``)."""

    retry_after_s: float
    source: Literal["monite", "budget"] = "monite"


class MoniteUnavailable(msgspec.Struct, frozen=True):
    """Worth retrying later: 5xx, timeout, network error or a malformed answer."""

    status: int | None
    error: str
    retry_after_s: float | None = None


class MoniteUnauthorized(msgspec.Struct, frozen=True):
    """The credentials (or the static token) were rejected, even after one token refresh."""

    message: str


class MoniteRejected(msgspec.Struct, frozen=True):
    """Any other 4xx: the request itself is wrong (413, 415, 421, 422, 424 ...); not retryable."""

    status: int
    message: str


MoniteFailure: TypeAlias = (
    MoniteNotFound | MoniteRateLimited | MoniteUnavailable | MoniteUnauthorized | MoniteRejected
)
MoniteResult: TypeAlias = MoniteOk | MoniteFailure
MoniteListResult: TypeAlias = MoniteListOk | MoniteFailure


class _ErrorDetail(msgspec.Struct, frozen=True):
    message: str = ""


class _ValidationIssue(msgspec.Struct, frozen=True):
    loc: list[str | int] = []
    msg: str = ""


class _ErrorBody(msgspec.Struct, frozen=True):
    """Monite's ``ErrorSchemaResponse`` or FastAPI's ``HTTPValidationError``."""

    error: _ErrorDetail | None = None
    detail: list[_ValidationIssue] | str | None = None


_object_decoder: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_error_decoder: Final = msgspec.json.Decoder(_ErrorBody)


def task_result(response: httpx.Response) -> MoniteResult:
    if not response.is_success:
        return failure(response)
    try:
        _object_decoder.decode(response.content)
    except msgspec.DecodeError as exc:
        return malformed(response, exc)
    except RecursionError:
        # Well-formed as far as we can tell but nested too deeply to skip: deterministic, so
        # retrying is pointless; the task decoder turns it into an invalid_payload outcome.
        pass
    return MoniteOk(response.status_code, response.content)


def failure(response: httpx.Response) -> MoniteFailure:
    """Classify a non-2xx answer (429 and 401 never get here: ``_call`` handles them)."""
    status = response.status_code
    if status == 404:
        return MoniteNotFound()
    if status >= 500:
        return MoniteUnavailable(status, _message(response), retry_after(response))
    return MoniteRejected(status, _message(response))


def malformed(response: httpx.Response, exc: msgspec.DecodeError) -> MoniteUnavailable:
    return MoniteUnavailable(response.status_code, f"malformed JSON from Monite: {exc}")


def _message(response: httpx.Response) -> str:
    """Monite's own explanation from an error body, or the reason phrase."""
    try:
        body = _error_decoder.decode(response.content)
    except msgspec.DecodeError:
        body = _ErrorBody()
    if body.error is not None and body.error.message:
        text = body.error.message
    elif isinstance(body.detail, list) and body.detail:
        text = "; ".join(
            f"{'.'.join(str(part) for part in issue.loc)}: {issue.msg}" for issue in body.detail
        )
    elif isinstance(body.detail, str) and body.detail:
        text = body.detail
    else:
        text = response.reason_phrase or f"HTTP {response.status_code}"
    return text[:_MESSAGE_LIMIT]


def retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC))


def describe(exc: httpx.HTTPError) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def invalid_uuids(values: Sequence[str], what: str) -> MoniteRejected | None:
    for value in values:
        try:
            uuid.UUID(value)
        except ValueError:
            return MoniteRejected(422, f"{what} {value[:64]!r} is not a UUID")
    return None


def invalid_entity(entity_id: str | None) -> MoniteRejected | None:
    return None if entity_id is None else invalid_uuids([entity_id], "entity id")
