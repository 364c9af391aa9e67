"""Monite's endpoints under ``/v1``: access tokens and the four OCR task operations.

Handler names are Monite's operation ids; the counters report requests under them. The gate
(``gate.py``) has already checked the version header, the token and the rate limit.
"""

from __future__ import annotations

import asyncio
import hmac
import uuid
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import HTTPException
from litestar.params import FromPath

from service.simulator.gate import CALLER_KEY, PUBLIC_OPT, Caller, CallerDep, SimulatorDep
from service.simulator.listing import QueryError, list_page, parse_query
from service.simulator.state import Simulator
from service.simulator.wire import (
    DOCUMENT_TYPES,
    CreateOcrTask,
    DocumentType,
    MessageBody,
    RevokeRequest,
    TokenRequest,
    TokenResponse,
    decode_body,
    error_response,
    json_response,
    validation_response,
)

AnyRequest = Request[Any, Any, Any]
NOT_FOUND: Final = "OCR task with the specified ID was not found."
# Leading bytes of the formats Monite's OCR accepts: PDF, PNG, JPEG.
_MAGIC: Final = (b"%PDF-", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
_MAX_FILE_NAME: Final = 255


def provide_caller(request: AnyRequest) -> Caller:
    """The caller the gate resolved for this request."""
    caller: Caller = request.scope["state"][CALLER_KEY]
    return caller


Credentialed = TypeVar("Credentialed", TokenRequest, RevokeRequest)


async def _with_credentials(
    request: AnyRequest, sim: Simulator, into: type[Credentialed]
) -> Credentialed | Response[bytes]:
    """The decoded body if it carries the configured client credentials; else 422 or 401."""
    payload = decode_body(await request.body(), into)
    if isinstance(payload, Response):
        return payload
    id_ok = hmac.compare_digest(payload.client_id.encode(), sim.config.client_id.encode())
    secret_ok = hmac.compare_digest(
        payload.client_secret.encode(), sim.config.client_secret.encode()
    )
    return payload if id_ok and secret_ok else error_response(401, "Wrong client credentials")


@post("/auth/token", name="post_auth_token", opt={PUBLIC_OPT: True})
async def post_auth_token(request: AnyRequest, sim: SimulatorDep) -> Response[bytes]:
    """Issue a partner (``client_credentials``) or entity-user (``entity_user``) token."""
    payload = await _with_credentials(request, sim, TokenRequest)
    if isinstance(payload, Response):
        return payload
    user = None
    if payload.grant_type == "entity_user":
        if payload.entity_user_id is None:
            return validation_response(["body", "entity_user_id"], "Field required", "missing")
        try:
            user = str(uuid.UUID(payload.entity_user_id))
        except ValueError:
            loc: list[str | int] = ["body", "entity_user_id"]
            return validation_response(loc, "Input should be a valid UUID", "uuid_parsing")
    ttl = sim.knobs.token_ttl_s
    token = sim.tokens.issue(payload.client_id, ttl, user)
    return json_response(TokenResponse(access_token=token, expires_in=ttl))


@post("/auth/revoke", name="post_auth_revoke", opt={PUBLIC_OPT: True})
async def post_auth_revoke(request: AnyRequest, sim: SimulatorDep) -> Response[bytes]:
    """Revoke one token."""
    payload = await _with_credentials(request, sim, RevokeRequest)
    if isinstance(payload, Response):
        return payload
    sim.tokens.revoke(payload.token)
    return json_response(MessageBody("Token revoked"))


@get("/ocr_tasks", name="get_ocr_tasks")
async def get_ocr_tasks(
    request: AnyRequest, sim: SimulatorDep, caller: CallerDep
) -> Response[bytes]:
    """List the caller's tasks: filters, ordering and cursor pagination."""
    try:
        query = parse_query(lambda name: request.query_params.getall(name, []))
    except QueryError as exc:
        return validation_response(exc.loc, exc.msg, "value_error")
    page = list_page(query, sim.tasks, caller.entity, sim.read_view(), sim.listed)
    return json_response(page)


@get("/ocr_tasks/{task_id:str}", name="get_ocr_tasks_id")
async def get_ocr_tasks_id(
    task_id: FromPath[str], sim: SimulatorDep, caller: CallerDep
) -> Response[bytes]:
    """One task; another entity's task is 404 like an unknown one."""
    if sim.chaos.get_latency_s:
        await asyncio.sleep(sim.chaos.get_latency_s)
    try:
        key = str(uuid.UUID(task_id))
    except ValueError:
        return validation_response(
            ["path", "task_id"], "Input should be a valid UUID", "uuid_parsing"
        )
    task = None if key in sim.chaos.not_found_ids else sim.tasks.get(key, caller.entity)
    if task is None:
        return error_response(404, NOT_FOUND)
    return json_response(sim.read_view().body(task))


@post("/ocr_tasks", name="post_ocr_tasks")
async def post_ocr_tasks(
    request: AnyRequest, sim: SimulatorDep, caller: CallerDep
) -> Response[bytes]:
    """Start OCR of a file given by URL."""
    payload = decode_body(await request.body(), CreateOcrTask)
    if isinstance(payload, Response):
        return payload
    parts = urlsplit(payload.file_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return validation_response(
            ["body", "file_url"], "Input should be a valid URL", "url_parsing"
        )
    return _accepted(sim, caller, payload.document_type)


@post(
    "/ocr_tasks/upload_from_file",
    name="post_ocr_tasks_upload_from_file",
    request_max_body_size=None,
)
async def post_ocr_tasks_upload_from_file(
    request: AnyRequest,
    sim: SimulatorDep,
    caller: CallerDep,
) -> Response[bytes]:
    """Start OCR of an uploaded PDF, PNG or JPEG (multipart field ``file``)."""
    try:
        kind = msgspec.convert(request.query_params.get("document_type"), DocumentType | None)
    except msgspec.ValidationError:
        allowed = ", ".join(DOCUMENT_TYPES)
        return validation_response(
            ["query", "document_type"], f"Input should be one of: {allowed}", "enum"
        )
    if request.content_type[0] != "multipart/form-data":
        return validation_response(["body", "file"], "Field required", "missing")
    try:
        form = await request.form()
    except HTTPException:
        return validation_response(["body"], "Invalid multipart/form-data body", "value_error")
    upload = form.get("file")
    try:
        if not isinstance(upload, UploadFile):
            return validation_response(["body", "file"], "Field required", "missing")
        if len(upload.filename) > _MAX_FILE_NAME:
            return validation_response(["body", "file"], "File name is too long.", "value_error")
        content = await upload.read()
    finally:
        for value in form.values():
            if isinstance(value, UploadFile):
                await value.close()
    if len(content) > sim.knobs.max_upload_bytes:
        return error_response(413, "File size exceeds the limit for OCR processing.")
    if not content.startswith(_MAGIC):
        return error_response(415, "Unsupported file format. OCR supports only PNG, JPG, and PDF.")
    return _accepted(sim, caller, kind)


def _accepted(
    sim: Simulator, caller: Caller, document_type: DocumentType | None
) -> Response[bytes]:
    task = sim.create_task(
        entity=caller.entity,
        outcome=sim.draw_outcome(),
        document_type=document_type,
        notify_version=caller.api_version if caller.entity_header else None,
    )
    return json_response(sim.view().body(task), 202)


ROUTES: Final = (
    post_auth_token,
    post_auth_revoke,
    get_ocr_tasks,
    get_ocr_tasks_id,
    post_ocr_tasks,
    post_ocr_tasks_upload_from_file,
)
