"""The checks every ``/v1`` request passes before its handler: the rules of docs/errors.md.

They read the published OpenAPI document, so what a route accepts is what its schema says.
Health, metrics and the schema itself are left alone: probes and scrapers are not our clients.

- a query parameter the route does not list is a 400 naming it (a misspelt filter must not
  silently return everything);
- a body whose content type the route does not take is a 415;
- a JSON body over ``JSON_BODY_LIMIT`` is a 413 before it is read (the route-wide limit of
  Litestar, ``request_max_body_size``, catches a body that does not announce its length);
- an empty JSON body, or one that is not JSON, is a 400 naming ``body`` (an untyped decode of
  at most 64 KiB, before Litestar decodes it into the handler's Struct).
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec
from litestar import Request
from litestar.enums import ParamType
from litestar.exceptions import HTTPException
from litestar.openapi.spec import OpenAPI, Operation, Parameter

from service.api.errors import FieldError, InvalidField, InvalidRequest, TooLarge

JSON_BODY_LIMIT: Final = 64 * 1024
"""Bytes a JSON body may have: plenty for 4 KiB of metadata and every other field."""

JSON_MEDIA_TYPE: Final = "application/json"
_T = TypeVar("_T")


def is_json(content_type: str) -> bool:
    """Whether a ``Content-Type`` value names JSON (``application/json``, ``…+json``)."""
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == JSON_MEDIA_TYPE or media_type.endswith("+json")


def too_large(size: int, limit: int, field: str = "body") -> InvalidField:
    """The 413 naming ``field`` (the JSON ``body``, or an uploaded ``file``) of ``size`` bytes."""
    return TooLarge(field, f"has {size} bytes; at most {limit} are taken")


def decode_json_body(body: bytes, type_: type[_T]) -> _T:
    """``body`` as ``type_``; 413 over ``JSON_BODY_LIMIT``, 400 naming the field otherwise."""
    if len(body) > JSON_BODY_LIMIT:
        raise too_large(len(body), JSON_BODY_LIMIT)
    if not body.strip():
        raise InvalidRequest("body", "is empty; send a JSON object")
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise InvalidRequest.from_validation(str(exc)) from None
    except msgspec.DecodeError:
        raise InvalidRequest("body", "is not valid JSON") from None


def _operation(request: Request[Any, Any, Any]) -> Operation | None:
    schema: OpenAPI = request.app.openapi_schema
    path_item = (schema.paths or {}).get(request.scope.get("path_template") or "")
    operation = getattr(path_item, request.method.lower(), None)
    return operation if isinstance(operation, Operation) else None


def _check_query(request: Request[Any, Any, Any], operation: Operation) -> None:
    known = {
        p.name
        for p in operation.parameters or ()
        if isinstance(p, Parameter) and p.param_in == ParamType.QUERY
    }
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        errors = [
            FieldError(field=name, message=f"is not a query parameter of this route ({listed})")
            for name in unknown
        ]
        raise InvalidRequest.with_errors(errors)


async def _check_body(request: Request[Any, Any, Any], operation: Operation) -> None:
    body_spec = operation.request_body
    accepted = list(getattr(body_spec, "content", None) or ())
    if not accepted:
        return
    # No Content-Type at all is read as JSON, as Litestar reads it.
    content_type = request.headers.get("content-type", JSON_MEDIA_TYPE)
    json_body = is_json(content_type) and JSON_MEDIA_TYPE in accepted
    if not json_body and content_type.partition(";")[0].strip().lower() not in accepted:
        raise HTTPException(status_code=415, detail=f"content-type must be {' or '.join(accepted)}")
    if json_body:
        length = request.content_length
        if length is not None and length > JSON_BODY_LIMIT:
            raise too_large(length, JSON_BODY_LIMIT)
        decode_json_body(await request.body(), Any)


async def check_request(request: Request[Any, Any, Any]) -> None:
    """Apply the rules above (a ``before_request`` hook of the app)."""
    operation = _operation(request) if request.url.path.startswith("/v1/") else None
    if operation is None:
        return
    _check_query(request, operation)
    await _check_body(request, operation)
