"""``POST /v1/documents``: create the Monite OCR task from an upload or a URL, then watch it.

The callback URL and every other field are checked before Monite is called, so a bad request never
leaves an orphan OCR task behind.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from litestar import Controller, Request, Response, post
from litestar.datastructures import UploadFile
from litestar.exceptions import HTTPException

from service.api.deps import DEPENDENCIES, ClientDep, ServicesDep
from service.api.errors import AUTHENTICATED, InvalidField, problem_responses
from service.api.schemas import (
    MAX_DEADLINE_S,
    DocumentType,
    DocumentUrlIn,
    WatchOut,
    watch_out,
)
from service.api.watches import IdempotencyKey, checked_callback, encode_metadata, register
from service.domain.monite_models import decode_task
from service.monite import (
    MoniteOk,
    MoniteRateLimited,
    MoniteRejected,
    MoniteResult,
    MoniteUnauthorized,
)

_DOCUMENT_TYPES: Final = ("invoice", "credit_note", "receipt")
# Monite accepts PDF, PNG and JPG; the first bytes tell which a file really is.
_MAGIC: Final = {
    b"%PDF-": "application/pdf",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
}
_MAX_FILENAME: Final = 255
# A client waits at most this long for Monite's shared rate budget, then gets 503 + Retry-After.
_BUDGET_WAIT_S: Final = 5.0


class _Fields(msgspec.Struct, frozen=True, kw_only=True):
    callback_url: str
    entity_id: str | None
    document_type: DocumentType | None
    metadata: dict[str, Any] | None
    secret: str | None
    deadline_s: int | None
    include_raw: bool


class DocumentController(Controller):
    """Submit a document for OCR and watch the task in one call."""

    path = "/v1/documents"
    tags = ["documents"]
    dependencies = DEPENDENCIES

    @post(
        "/",
        status_code=202,
        summary="Upload a document (multipart) or give its URL (JSON); OCR it and watch the task",
        responses=problem_responses(*AUTHENTICATED, 409, 413, 415, 422, 502),
    )
    async def submit(
        self,
        request: Request[Any, Any, Any],
        services: ServicesDep,
        client: ClientDep,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[WatchOut]:
        """202 with the watch of the new OCR task.

        With an ``Idempotency-Key`` the key is held while the Monite task is made: a retry gets
        the watch of the first request (or a 409 while that one is still at work), never a
        second Monite task.
        """
        content_type = request.headers.get("content-type", "")
        create_task: Callable[[], Awaitable[Any]]
        if content_type.startswith("multipart/form-data"):
            fields, upload = await _multipart(request)
            await checked_callback(services, fields.callback_url)
            encode_metadata(fields.metadata)

            def create_task() -> Awaitable[Any]:
                return services.monite.upload_file(
                    upload[0],
                    upload[1],
                    upload[2],
                    fields.document_type,
                    fields.entity_id,
                    max_wait_s=_BUDGET_WAIT_S,
                )

        elif content_type.startswith("application/json"):
            try:
                data = msgspec.json.decode(await request.body(), type=DocumentUrlIn)
            except msgspec.ValidationError as exc:
                raise InvalidField.from_validation(str(exc)) from None
            except msgspec.DecodeError:
                raise InvalidField("body", "is not valid JSON") from None
            fields = _Fields(
                callback_url=data.callback_url,
                entity_id=None if data.entity_id is None else str(data.entity_id),
                document_type=data.document_type,
                metadata=data.metadata,
                secret=data.secret,
                deadline_s=data.deadline_s,
                include_raw=data.include_raw,
            )
            if not data.file_url.startswith(("http://", "https://")):
                raise InvalidField("file_url", "must be an http(s) URL")
            await checked_callback(services, fields.callback_url)
            encode_metadata(fields.metadata)

            def create_task() -> Awaitable[Any]:
                return services.monite.create_task_from_url(
                    data.file_url, data.document_type, fields.entity_id, max_wait_s=_BUDGET_WAIT_S
                )

        else:
            raise HTTPException(
                status_code=415,
                detail="send multipart/form-data with a 'file' part, or JSON with 'file_url'",
            )
        if idempotency_key is not None:
            earlier = await services.watches.claim_idempotency(client, idempotency_key)
            if earlier is not None:
                return Response(watch_out(earlier), status_code=202)
        try:
            task_id = _created_task_id(await create_task())
        except BaseException:
            if idempotency_key is not None:  # nothing was made: a retry may try again
                await services.watches.release_idempotency(client, idempotency_key)
            raise
        out, _ = await register(
            services,
            client,
            task_id=task_id,
            callback_url=fields.callback_url,
            entity_id=fields.entity_id,
            metadata=fields.metadata,
            secret=fields.secret,
            deadline_s=fields.deadline_s,
            include_raw=fields.include_raw,
            idempotency_key=idempotency_key,
            idempotency_claimed=idempotency_key is not None,
        )
        return Response(out, status_code=202)


async def _multipart(request: Request[Any, Any, Any]) -> tuple[_Fields, tuple[str, bytes, str]]:
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidField("file", "a multipart part named 'file' with the document is required")
    content = await upload.read()
    if not content:
        raise InvalidField("file", "is empty")
    filename = (upload.filename or "document")[:_MAX_FILENAME]
    detected = next((t for magic, t in _MAGIC.items() if content.startswith(magic)), None)
    if detected is None:
        raise HTTPException(
            status_code=415, detail="file: only PDF, PNG and JPEG documents can be OCRed"
        )

    def text(name: str, limit: int = 2048) -> str | None:
        value = form.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) > limit:
            raise InvalidField(name, f"must be text of at most {limit} characters")
        return value

    known = {
        "file",
        "callback_url",
        "entity_id",
        "document_type",
        "metadata",
        "secret",
        "deadline_s",
        "include_raw",
    }
    for name in form:
        if name not in known:
            raise InvalidField(name, "is not a known field")
    callback_url = text("callback_url")
    if callback_url is None:
        raise InvalidField("callback_url", "is required")
    entity_id = text("entity_id", 64)
    if entity_id is not None:
        entity_id = _uuid("entity_id", entity_id)
    document_type_text = text("document_type", 32)
    document_type: DocumentType | None = None
    if document_type_text is not None:
        if document_type_text not in _DOCUMENT_TYPES:
            raise InvalidField("document_type", f"must be one of {', '.join(_DOCUMENT_TYPES)}")
        document_type = document_type_text  # type: ignore[assignment]
    metadata_text = text("metadata", 8192)
    metadata: dict[str, Any] | None = None
    if metadata_text is not None:
        try:
            metadata = msgspec.json.decode(metadata_text, type=dict[str, Any])
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise InvalidField("metadata", "must be a JSON object") from None
    deadline_text = text("deadline_s", 16)
    deadline_s = None
    if deadline_text is not None:
        if not deadline_text.isdigit() or not 1 <= int(deadline_text) <= MAX_DEADLINE_S:
            raise InvalidField("deadline_s", f"must be a whole number from 1 to {MAX_DEADLINE_S}")
        deadline_s = int(deadline_text)
    secret = text("secret", 300)
    if secret is not None and not secret.startswith("whsec_"):
        raise InvalidField("secret", "must be a Standard Webhooks secret (whsec_…)")
    fields = _Fields(
        callback_url=callback_url,
        entity_id=entity_id,
        document_type=document_type,
        metadata=metadata,
        secret=secret,
        deadline_s=deadline_s,
        include_raw=(text("include_raw", 5) or "false").lower() == "true",
    )
    return fields, (filename, content, detected)


def _uuid(field: str, value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidField(field, "must be a UUID") from None


def _created_task_id(result: MoniteResult) -> str:
    """The id of the task Monite created, or the HTTP error that tells the caller why not."""
    if isinstance(result, MoniteOk):
        try:
            return decode_task(result.body).id
        except (msgspec.ValidationError, msgspec.DecodeError):
            raise HTTPException(
                status_code=502, detail="Monite answered with an unreadable task"
            ) from None
    if isinstance(result, MoniteRejected):
        status = result.status if result.status in (400, 413, 415, 422) else 422
        raise HTTPException(
            status_code=status, detail=f"Monite refused the document: {result.message}"
        )
    if isinstance(result, MoniteRateLimited):
        raise HTTPException(
            status_code=503,
            detail="Monite's rate limit is reached; try again shortly",
            headers={"Retry-After": str(max(1, math.ceil(result.retry_after_s)))},
        )
    if isinstance(result, MoniteUnauthorized):
        raise HTTPException(status_code=502, detail="Monite rejected ocr-relay's credentials")
    raise HTTPException(status_code=502, detail="Monite is unavailable; try again later")
