"""Monite's OCR task endpoints: get one, list many by id, create from a URL or an upload.

Every call returns a typed result (``service.monite.results``) and never raises for HTTP or network
trouble. Every request (the token request included) first takes a slot of the ``RateBudget``
shared by all processes (``service.monite.transport``); the access token is shared too
(``service.monite.token``). After a 401 the token that failed is dropped and the call is retried
once with a fresh one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any, Final, Literal

import httpx
import msgspec
from redis.asyncio import Redis

from service import metrics
from service.monite.budget import Priority, RateBudget
from service.monite.results import (
    MoniteFailure,
    MoniteListOk,
    MoniteListResult,
    MoniteRateLimited,
    MoniteResult,
    MoniteUnauthorized,
    MoniteUnavailable,
    failure,
    invalid_entity,
    invalid_uuids,
    malformed,
    task_result,
)
from service.monite.token import SharedToken, Token
from service.monite.transport import Endpoint, MoniteTransport
from service.settings import Settings
from service.storage.keys import Keys

log = logging.getLogger(__name__)

DocumentType = Literal["invoice", "credit_note", "receipt"]

PAGE_LIMIT: Final = 100
"""Most ids (and tasks) Monite accepts in one ``GET /ocr_tasks`` page."""
# A page chain longer than this means Monite keeps handing back tokens; stop rather than loop.
_MAX_PAGES_PER_BATCH: Final = 10


class _CreateTaskRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    file_url: str
    document_type: DocumentType | None = None


class _TaskPage(msgspec.Struct, frozen=True):
    data: list[msgspec.Raw]
    next_pagination_token: str | None = None


_page_decoder: Final = msgspec.json.Decoder(_TaskPage)


class MoniteClient:
    """Monite's OCR API for one set of credentials; cheap to build, safe to share in a process.

    Over 200 lines, for a reason: four endpoints and list paging, each a thin translation of
    Monite's HTTP into typed results; the token, the budget and the transport live elsewhere."""

    def __init__(
        self, settings: Settings, redis: Redis, http: httpx.AsyncClient, keys: Keys
    ) -> None:
        self._settings = settings
        self._transport = MoniteTransport(settings, redis, http, keys)
        self._token = SharedToken(settings, redis, keys, self._transport)

    @property
    def budget(self) -> RateBudget:
        """The shared rate budget these calls draw from."""
        return self._transport.budget

    async def take_slot(
        self, priority: Priority, max_wait_s: float | None
    ) -> float | MoniteRateLimited:
        """Take one request's slot of the shared budget; the seconds waited, or the refusal."""
        return await self._transport.take_slot(priority, max_wait_s)

    # -- OCR tasks ---------------------------------------------------------------------------
    async def get_task(
        self,
        task_id: str,
        entity_id: str | None,
        *,
        priority: Priority = "low",
        max_wait_s: float | None = None,
        slot_taken: bool = False,
    ) -> MoniteResult:
        """``GET /ocr_tasks/{task_id}``: the task's raw JSON, or why not.

        ``slot_taken``: the caller has already taken this request's slot of the budget.
        """
        bad = invalid_uuids([task_id], "task id") or invalid_entity(entity_id)
        if bad:
            return bad
        return await self._task_call(
            "get_task",
            "GET",
            f"/ocr_tasks/{uuid.UUID(task_id)}",
            entity_id=entity_id,
            priority=priority,
            max_wait_s=max_wait_s,
            slot_taken=slot_taken,
        )

    async def list_tasks(
        self,
        task_ids: Sequence[str],
        entity_id: str | None,
        *,
        priority: Priority = "low",
        max_wait_s: float | None = None,
        slot_taken: bool = False,
    ) -> MoniteListResult:
        """``GET /ocr_tasks?id__in=...``, up to 100 ids a request, every page followed.

        Ids Monite does not know are simply missing from ``items``; tell them apart with
        ``get_task``. The first failing request fails the whole call. ``slot_taken``: the caller
        has already taken the budget slot of the first request.
        """
        bad = invalid_uuids(task_ids, "task id") or invalid_entity(entity_id)
        if bad:
            return bad
        items: list[bytes] = []
        for start in range(0, len(task_ids), PAGE_LIMIT):
            batch = task_ids[start : start + PAGE_LIMIT]
            metrics.MONITE_BATCH_SIZE.observe(len(batch))
            first: list[tuple[str, str | int]] = [("id__in", task_id) for task_id in batch]
            result = await self._list_batch(first, entity_id, priority, max_wait_s, slot_taken)
            if not isinstance(result, list):
                return result
            items.extend(result)
            slot_taken = False
        return MoniteListOk(items=items)

    async def create_task_from_url(
        self,
        file_url: str,
        document_type: DocumentType | None,
        entity_id: str | None,
        *,
        max_wait_s: float | None = None,
    ) -> MoniteResult:
        """``POST /ocr_tasks`` with a file URL Monite downloads; 202 with the new task."""
        bad = invalid_entity(entity_id)
        if bad:
            return bad
        body = msgspec.json.encode(_CreateTaskRequest(file_url, document_type))
        return await self._task_call(
            "create_task",
            "POST",
            "/ocr_tasks",
            entity_id=entity_id,
            content=body,
            priority="high",
            max_wait_s=max_wait_s,
        )

    async def upload_file(
        self,
        filename: str,
        content: bytes,
        content_type: str,
        document_type: DocumentType | None,
        entity_id: str | None,
        *,
        max_wait_s: float | None = None,
    ) -> MoniteResult:
        """``POST /ocr_tasks/upload_from_file`` (multipart); 202 with the new task."""
        bad = invalid_entity(entity_id)
        if bad:
            return bad
        return await self._task_call(
            "upload_file",
            "POST",
            "/ocr_tasks/upload_from_file",
            entity_id=entity_id,
            params=[("document_type", document_type)] if document_type else None,
            files={"file": (filename, content, content_type)},
            priority="high",
            max_wait_s=max_wait_s,
        )

    async def _list_batch(
        self,
        params: list[tuple[str, str | int]],
        entity_id: str | None,
        priority: Priority,
        max_wait_s: float | None,
        slot_taken: bool,
    ) -> list[bytes] | MoniteFailure:
        items: list[bytes] = []
        query = [*params, ("limit", PAGE_LIMIT)]
        for _ in range(_MAX_PAGES_PER_BATCH):
            response = await self._call(
                "list_tasks",
                "GET",
                "/ocr_tasks",
                entity_id=entity_id,
                params=query,
                priority=priority,
                max_wait_s=max_wait_s,
                slot_taken=slot_taken,
            )
            slot_taken = False
            if not isinstance(response, httpx.Response):
                return response
            # Monite documents a 404 for lists ("OCR request is not found"): none of the ids.
            if response.status_code == 404:
                return items
            if not response.is_success:
                return failure(response)
            try:
                page = _page_decoder.decode(response.content)
            except msgspec.DecodeError as exc:
                return malformed(response, exc)
            except RecursionError:
                # A task nested deeper than msgspec can skip: leave the page's ids out, so the
                # caller asks for each alone and only the hostile one ends as invalid_payload.
                return items
            items.extend(bytes(task) for task in page.data)
            if not page.next_pagination_token:
                return items
            # With a token Monite ignores every other parameter, so send only the token.
            query = [("pagination_token", page.next_pagination_token)]
        return MoniteUnavailable(None, "Monite kept returning pagination tokens; gave up")

    # -- one request, with token and budget --------------------------------------------------
    async def _task_call(
        self, endpoint: Endpoint, method: str, path: str, **call: Any
    ) -> MoniteResult:
        """``_call`` for endpoints that answer with one task object."""
        response = await self._call(endpoint, method, path, **call)
        return response if not isinstance(response, httpx.Response) else task_result(response)

    async def _call(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        *,
        entity_id: str | None,
        priority: Priority,
        max_wait_s: float | None,
        params: list[tuple[str, str | int]] | None = None,
        content: bytes | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
        slot_taken: bool = False,
    ) -> httpx.Response | MoniteFailure:
        """Send one API request; after a 401, drop the token, fetch a fresh one and retry once."""
        headers = {"x-monite-version": self._settings.monite_api_version}
        if entity_id:
            headers["x-monite-entity-id"] = entity_id
        if content is not None:
            headers["content-type"] = "application/json"
        for attempt in range(2):
            token = await self._token.current(max_wait_s)
            if not isinstance(token, Token):
                return token
            headers["authorization"] = f"Bearer {token.value}"
            response = await self._transport.send(
                endpoint,
                method,
                path,
                headers,
                priority,
                max_wait_s,
                params=params,
                content=content,
                files=files,
                slot_taken=slot_taken,
            )
            slot_taken = False  # a retry after a 401 is another request
            if not isinstance(response, httpx.Response) or response.status_code != 401:
                return response
            if self._settings.monite_token:
                return MoniteUnauthorized("Monite rejected the configured MONITE_TOKEN")
            if attempt == 0:
                log.warning("Monite refused the access token; fetching a new one")
                await self._token.drop(token)
        return MoniteUnauthorized("Monite rejected a freshly issued access token")
