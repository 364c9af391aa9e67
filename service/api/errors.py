"""RFC 9457 problem details for every error the API returns.

Validation errors list ``errors: [{field, message}]``; Redis out of reach is a 503 with
``Retry-After``; an unexpected error is a bare 500 problem whose detail never carries internals
(they go to the log, with the request path).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR, HTTP_503_SERVICE_UNAVAILABLE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.operations import IdempotencyMismatch
from service.storage.idempotency import IdempotencyInProgress

log = logging.getLogger("ocr_relay.api")

PROBLEM_JSON: Final = "application/problem+json"
_AT_PATH = re.compile(r"at `\$(?:\.)?([^`]*)`")
_NAMED_FIELD = re.compile(r"field `([^`]*)`")
# Handler arguments renamed because Litestar reserves their wire names.
_WIRE_NAMES: Final = {"state_filter": "state"}
# Retry-After of answers that pass by themselves within seconds: a Redis restart or failover,
# a request still at work under the same Idempotency-Key.
RETRY_SHORTLY_S: Final = 5


class FieldError(msgspec.Struct, frozen=True):
    """One invalid input: which field, and what is wrong with it."""

    field: str
    message: str


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None


class InvalidField(HTTPException):
    """A request field that matches the schema but is refused by a rule it cannot state (422).

    The rules of 400 against 422 are in docs/errors.md.
    """

    status_code = 422
    title = "Invalid field"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(detail=f"{field}: {message}")
        self.errors = [FieldError(field=field, message=message)]

    @classmethod
    def from_validation(cls, message: str) -> InvalidField:
        """From a msgspec validation message (names the field it is about)."""
        error = field_error(message)
        return cls(error.field, error.message)

    @classmethod
    def with_errors(cls, errors: list[FieldError]) -> InvalidField:
        """One answer naming several fields (``errors`` must not be empty)."""
        exc = cls(errors[0].field, errors[0].message)
        exc.errors = errors
        exc.detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        return exc


class InvalidRequest(InvalidField):
    """A request that does not match the published schema: syntax, type, range, unknown (400)."""

    status_code = 400
    title = "Invalid request"


class TooLarge(InvalidField):
    """A body or an uploaded file over its limit (413 naming ``body`` or ``file``)."""

    status_code = 413
    title = "Request too large"


class StateConflict(InvalidField):
    """A resource's state forbids the action (409 naming ``state``)."""

    status_code = 409
    title = "Conflict"

    def __init__(self, message: str) -> None:
        super().__init__("state", message)


def problem(
    status: int, title: str, detail: str | None = None, errors: list[FieldError] | None = None
) -> Response[Problem]:
    """A problem+json response."""
    slug = title.lower().replace(" ", "-")
    return Response(
        Problem(
            type=f"https://ocr-relay.dev/problems/{slug}",
            title=title,
            status=status,
            detail=detail,
            errors=errors,
        ),
        status_code=status,
        media_type=PROBLEM_JSON,
    )


def field_error(message: str, fallback: str = "body") -> FieldError:
    """A msgspec validation message as a field error: the field it names, and what is wrong."""
    match = _AT_PATH.search(message) or _NAMED_FIELD.search(message)
    field = match.group(1) if match else fallback
    if field in ("data", ""):
        field = "body"
    field = _WIRE_NAMES.get(field, field)
    return FieldError(field=field, message=_AT_PATH.sub("", message).rstrip(" -"))


def _field_errors(extra: Any) -> list[FieldError]:
    errors: list[FieldError] = []
    for item in extra if isinstance(extra, list) else []:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid value"))
        errors.append(field_error(message, str(item.get("key") or "body")))
    return errors


def handle_validation(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[Problem]:
    """400 for input that does not match the schema (unknown field, wrong type, bad JSON)."""
    errors = _field_errors(exc.extra) or [FieldError(field="body", message=exc.detail)]
    return problem(
        400, "Invalid request", "; ".join(f"{e.field}: {e.message}" for e in errors), errors
    )


def handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    """Problem documents for Litestar's and our own HTTP errors."""
    if isinstance(exc, InvalidField):
        return problem(exc.status_code, exc.title, exc.detail, exc.errors)
    title = _TITLES.get(exc.status_code, "Error")
    response = problem(exc.status_code, title, exc.detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def handle_storage_unavailable(
    request: Request[Any, Any, Any], exc: RedisError
) -> Response[Problem]:
    """503 + ``Retry-After`` while Redis cannot serve: an outage, not a bug of the request.

    Out of reach, a read-only replica (a failover under way) or full (``maxmemory``): a refused
    command changes nothing, registration and cancellation are idempotent, and reconcile
    schedules polls a registration could not enqueue, so the client may simply send again.
    """
    what = _STORAGE_TROUBLE.get(type(exc), "unreachable")
    # A full Redis needs an operator; the others pass by themselves.
    level = logging.ERROR if what == "full" else logging.WARNING
    log.log(
        level,
        f"redis {what}",
        extra={"path": request.url.path, "method": request.method, "error": type(exc).__name__},
    )
    response = problem(
        HTTP_503_SERVICE_UNAVAILABLE, "Unavailable", f"storage is {what}; retry shortly"
    )
    response.headers["Retry-After"] = str(RETRY_SHORTLY_S)
    return response


_STORAGE_TROUBLE: Final[dict[type[RedisError], str]] = {
    ReadOnlyError: "read-only (a failover is under way)",
    OutOfMemoryError: "full",
}


def handle_idempotency_in_progress(
    request: Request[Any, Any, Any], exc: IdempotencyInProgress
) -> Response[Problem]:
    """409 + ``Retry-After``: another request with this Idempotency-Key is still at work."""
    response = problem(
        409,
        "Conflict",
        "a request with this Idempotency-Key is still being processed; retry shortly",
        [FieldError(field="Idempotency-Key", message="is in use by a request in progress")],
    )
    response.headers["Retry-After"] = str(RETRY_SHORTLY_S)
    return response


def handle_idempotency_mismatch(
    request: Request[Any, Any, Any], exc: IdempotencyMismatch
) -> Response[Problem]:
    """422: an Idempotency-Key reused with a different request (as payment APIs answer)."""
    return problem(
        422,
        "Invalid field",
        "Idempotency-Key: was used before with a different request; send the same request to "
        "replay it, or use a new key",
        [
            FieldError(
                field="Idempotency-Key",
                message="was used before with a different request; use a new key",
            )
        ],
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    """A bug or an outage: log it, answer a 500 that reveals nothing."""
    log.exception("unhandled error", extra={"path": request.url.path, "method": request.method})
    return problem(
        HTTP_500_INTERNAL_SERVER_ERROR, "Internal error", "the request could not be completed"
    )


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem+json answers a handler may give.

    Without them the schema documents only Litestar's default ``400 application/json``, and every
    404, 422 or 429 would be an answer the published schema does not describe (schemathesis
    checks this in ``tests/test_openapi_fuzz.py``).
    """
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=_TITLES[status],
            generate_examples=False,
        )
        for status in statuses
    }


# Any authenticated request may be malformed, unauthenticated, over the client's rate limit, or
# arrive while Redis is out of reach.
AUTHENTICATED: Final = (400, 401, 429, 503)


_TITLES: Final = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid field",
    429: "Too many requests",
    502: "Upstream error",
    503: "Unavailable",
}

EXCEPTION_HANDLERS: Final = {
    ValidationException: handle_validation,
    HTTPException: handle_http,
    RedisConnectionError: handle_storage_unavailable,
    RedisTimeoutError: handle_storage_unavailable,
    ReadOnlyError: handle_storage_unavailable,
    IdempotencyInProgress: handle_idempotency_in_progress,
    IdempotencyMismatch: handle_idempotency_mismatch,
    OutOfMemoryError: handle_storage_unavailable,
    Exception: handle_unexpected,
}

__all__ = [
    "AUTHENTICATED",
    "EXCEPTION_HANDLERS",
    "FieldError",
    "InvalidField",
    "InvalidRequest",
    "MediaType",
    "Problem",
    "StateConflict",
    "TooLarge",
    "problem",
    "problem_responses",
]
