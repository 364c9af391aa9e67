"""``POST /v1/documents``: create the Monite OCR task from an upload or a URL, then watch it.

The callback URL and every other field are checked before Monite is called, so a bad request never
leaves an orphan OCR task behind.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from litestar import Controller, Request, Response, post
from litestar.datastructures import UploadFile
from litestar.exceptions import HTTPException

from service.api.bodies import DocumentFieldsIn, DocumentUrlIn, WatchOut, watch_out
from service.api.deps import DEPENDENCIES, ClientDep, ServicesDep
from service.api.errors import AUTHENTICATED, InvalidField, InvalidRequest, problem_responses
from service.api.request_rules import JSON_BODY_LIMIT, decode_json_body, is_json, too_large
from service.api.watches import IdempotencyKey, registration
from service.domain.monite_models import decode_task
from service.monite import (
    MoniteOk,
    MoniteRateLimited,
    MoniteRejected,
    MoniteResult,
    MoniteUnauthorized,
)
from service.operations import request_digest

# Monite accepts PDF, PNG and JPG; the first bytes tell which a file really is.
_MAGIC: Final = {
    b"%PDF-": "application/pdf",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
}
_MAX_FILENAME: Final = 255
# Room in a multipart body for the form fields and part headers besides the file itself.
_FORM_ALLOWANCE: Final = JSON_BODY_LIMIT
# A client waits at most this long for Monite's shared rate budget, then gets 503 + Retry-After.
_BUDGET_WAIT_S: Final = 5.0


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
        fields: DocumentFieldsIn
        create: Callable[[], Awaitable[MoniteResult]]
        if content_type.startswith("multipart/form-data"):
            fields, upload = await _multipart(request, services.settings.max_upload_bytes)
            filename, content, media_type = upload
            document = hashlib.sha256(content).digest()

            def create() -> Awaitable[MoniteResult]:
                return services.monite.upload_file(
                    filename,
                    content,
                    media_type,
                    fields.document_type,
                    _text(fields.entity_id),
                    max_wait_s=_BUDGET_WAIT_S,
                )

        elif is_json(content_type):
            data = decode_json_body(await request.body(), DocumentUrlIn)
            if not data.file_url.startswith(("http://", "https://")):
                raise InvalidField("file_url", "must be an http(s) URL")
            fields, document = data, data.file_url.encode()

            def create() -> Awaitable[MoniteResult]:
                return services.monite.create_task_from_url(
                    data.file_url,
                    data.document_type,
                    _text(data.entity_id),
                    max_wait_s=_BUDGET_WAIT_S,
                )

        else:
            raise HTTPException(
                status_code=415,
                detail="send multipart/form-data with a 'file' part, or JSON with 'file_url'",
            )

        async def create_task() -> str:
            return _created_task_id(await create())

        digest = request_digest(b"POST /v1/documents", document, msgspec.json.encode(fields))
        reg = await registration(
            services, client, fields, task_id="", idempotency_key=idempotency_key, digest=digest
        )
        registered = await services.watches.submit_document(reg, create_task)
        out = watch_out(registered.watch, secret=registered.secret)
        return Response(out, status_code=202)


def document_controller(max_upload_bytes: int) -> type[DocumentController]:
    """``DocumentController`` taking a multipart body of one file of ``max_upload_bytes``.

    Every other route keeps the app's JSON limit; a JSON body sent here is held to it as well
    (``decode_json_body``).
    """
    limit = max_upload_bytes + _FORM_ALLOWANCE
    return type("DocumentController", (DocumentController,), {"request_max_body_size": limit})


async def _multipart(
    request: Request[Any, Any, Any], max_upload_bytes: int
) -> tuple[DocumentFieldsIn, tuple[str, bytes, str]]:
    """The form's fields, checked as JSON's are (``DocumentFieldsIn``), and its file."""
    form = await request.form()
    values: dict[str, Any] = {}
    upload: UploadFile | None = None
    for name in form:
        parts = form.getall(name)
        if len(parts) > 1:
            raise InvalidRequest(name, "is given more than once")
        [part] = parts
        if name == "file":
            if not isinstance(part, UploadFile):
                raise InvalidRequest("file", "must be a file part (with a filename)")
            upload = part
        elif isinstance(part, UploadFile):
            raise InvalidRequest(name, "must be a text field, not a file")
        elif part != "":  # an empty field is an absent one, as browsers send them
            values[name] = _form_json(name, part) if name == "metadata" else part
    if upload is None:
        raise InvalidRequest("file", "a multipart part named 'file' with the document is required")
    try:
        fields = msgspec.convert(values, DocumentFieldsIn, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidRequest.from_validation(str(exc)) from None
    return fields, await _document(upload, max_upload_bytes)


def _form_json(name: str, text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        raise InvalidRequest(name, "must be JSON text") from None


async def _document(upload: UploadFile, max_upload_bytes: int) -> tuple[str, bytes, str]:
    """The file's name, bytes and detected type; 413 over ``MAX_UPLOAD_BYTES``, 415 if unknown."""
    content = await upload.read()
    if len(content) > max_upload_bytes:
        raise too_large(len(content), max_upload_bytes, "file")
    if not content:
        raise InvalidField("file", "is empty")
    detected = next((t for magic, t in _MAGIC.items() if content.startswith(magic)), None)
    if detected is None:
        raise HTTPException(
            status_code=415, detail="file: only PDF, PNG and JPEG documents can be OCRed"
        )
    return (upload.filename or "document")[:_MAX_FILENAME], content, detected


def _text(value: object) -> str | None:
    return None if value is None else str(value)


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
