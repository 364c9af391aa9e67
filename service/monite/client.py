"""The only module that talks to Monite: access token, OCR task calls, the shared rate budget.

Every call returns a typed result and never raises for HTTP or network trouble. Every request
(the token request included) first takes a slot of the ``RateBudget`` shared by all processes.

The access token is shared by all processes through Redis: one process fetches it (a ``SET NX``
lock makes the fetch a single flight across processes, an ``asyncio.Lock`` within one), the others
wait for it and read it. It is refreshed before it expires; after a 401 the token that failed is
dropped (only if nobody has replaced it yet) and the call is retried once with a fresh one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import secrets
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias

import httpx
import msgspec
from redis.asyncio import Redis

from service import metrics
from service.domain.backoff import parse_retry_after
from service.monite.budget import Priority, RateBudget, RateBudgetTimeout
from service.settings import DEV_MONITE_CLIENT_ID, DEV_MONITE_CLIENT_SECRET, Settings
from service.storage.keys import Keys

log = logging.getLogger(__name__)

DocumentType = Literal["invoice", "credit_note", "receipt"]
Endpoint = Literal["auth_token", "get_task", "list_tasks", "create_task", "upload_file"]

PAGE_LIMIT: Final = 100
"""Most ids (and tasks) Monite accepts in one ``GET /ocr_tasks`` page."""
# A page chain longer than this means Monite keeps handing back tokens; stop rather than loop.
_MAX_PAGES_PER_BATCH: Final = 10
_DEFAULT_RETRY_AFTER_S: Final = 1.0
_MESSAGE_LIMIT: Final = 300
_TOKEN_WAIT_STEP_S: Final = 0.05
# What we believe of a token endpoint's ``expires_in``: at most a day (Monite's last 30 min), and
# when it gives none we can use, five minutes; a token that dies sooner is answered 401 and
# replaced, so a short guess costs a token request, a long one a failed call.
_MAX_TOKEN_LIFETIME_S: Final = 86_400
_FALLBACK_TOKEN_LIFETIME_S: Final = 300


# -- results -------------------------------------------------------------------------------------
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


# -- wire shapes ---------------------------------------------------------------------------------
class _TokenRequest(msgspec.Struct, frozen=True):
    client_id: str
    client_secret: str
    grant_type: str = "client_credentials"


class _TokenResponse(msgspec.Struct, frozen=True):
    access_token: str
    # Kept raw: a missing, huge (1e400) or non-numeric lifetime must not cost the token itself.
    expires_in: msgspec.Raw = msgspec.Raw(b"null")


class _CreateTaskRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    file_url: str
    document_type: DocumentType | None = None


class _TaskPage(msgspec.Struct, frozen=True):
    data: list[msgspec.Raw]
    next_pagination_token: str | None = None


class _ErrorDetail(msgspec.Struct, frozen=True):
    message: str = ""


class _ValidationIssue(msgspec.Struct, frozen=True):
    loc: list[str | int] = []
    msg: str = ""


class _ErrorBody(msgspec.Struct, frozen=True):
    """Monite's ``ErrorSchemaResponse`` or FastAPI's ``HTTPValidationError``."""

    error: _ErrorDetail | None = None
    detail: list[_ValidationIssue] | str | None = None


class _StoredToken(msgspec.Struct, frozen=True, array_like=True):
    """The token as kept in Redis, with the lifetime Monite gave it (ms)."""

    access_token: str
    lifetime_ms: int


_stored_token_decoder: Final = msgspec.msgpack.Decoder(_StoredToken)
_page_decoder: Final = msgspec.json.Decoder(_TaskPage)
_object_decoder: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_error_decoder: Final = msgspec.json.Decoder(_ErrorBody)
_token_decoder: Final = msgspec.json.Decoder(_TokenResponse)

# Deletes KEYS[1] only while it still holds ARGV[1]: releasing a lock we own, or dropping the
# token that just failed without dropping the fresh one another process stored meanwhile.
_DELETE_IF_EQUAL_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def credentials_id(settings: Settings) -> str:
    """A short, stable id of the Monite API client in use (never derived from a secret).

    It names the shared token and the shared rate budget, so every process using the same
    credentials against the same Monite shares both.
    """
    client = "static-token" if settings.monite_token else _client_id(settings)
    digest = hashlib.sha256(f"{settings.monite_base_url}\n{client}".encode())
    return digest.hexdigest()[:16]


def build_monite_http(settings: Settings) -> httpx.AsyncClient:
    """The process-wide HTTP client for Monite: pooled, bounded, no redirects, finite timeouts."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            settings.monite_timeout_s, connect=min(5.0, settings.monite_timeout_s)
        ),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=30),
        follow_redirects=False,
        headers={"user-agent": "ocr-relay"},
    )


def rate_budget(settings: Settings, redis: Redis, keys: Keys) -> RateBudget:
    """The budget every process shares for these credentials.

    The burst is a fifth of a second's worth, so a full burst followed by a second at the full
    rate stays within Monite's per-second limit (30/s) at the default rate of 25/s.
    """
    cid = credentials_id(settings)
    rate = settings.monite_rate_limit
    burst = max(1, math.floor(rate / 5))
    return RateBudget(redis, keys.rate_budget(cid), keys.rate_pause(cid), rate, burst)


def _client_id(settings: Settings) -> str:
    # Without credentials the service talks to the simulator, which accepts the public dev pair.
    return settings.monite_client_id or DEV_MONITE_CLIENT_ID


class _Token(msgspec.Struct, frozen=True):
    """A token this process holds: the Redis value it came from and when to look again."""

    raw: bytes
    value: str
    fresh_until: float  # time.monotonic()


class MoniteClient:
    """Monite's OCR API for one set of credentials; cheap to build, safe to share in a process."""

    def __init__(
        self, settings: Settings, redis: Redis, http: httpx.AsyncClient, keys: Keys
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._http = http
        self._base = settings.monite_base_url
        cid = credentials_id(settings)
        self._token_key = keys.monite_token(cid)
        self._lock_key = keys.monite_token_lock(cid)
        self._lock_ttl_ms = int(settings.monite_timeout_s * 3000)
        self._budget = rate_budget(settings, redis, keys)
        self._delete_if_equal = redis.register_script(_DELETE_IF_EQUAL_LUA)
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()

    @property
    def budget(self) -> RateBudget:
        """The shared rate budget these calls draw from."""
        return self._budget

    async def take_slot(
        self, priority: Priority, max_wait_s: float | None
    ) -> float | MoniteRateLimited:
        """Take one request's slot of the shared budget; the seconds waited, or the refusal."""
        try:
            waited = await self._budget.acquire(priority, max_wait_s)
        except RateBudgetTimeout as exc:
            return MoniteRateLimited(exc.retry_after_s, source="budget")
        metrics.MONITE_LIMITER_WAIT.labels(priority).observe(waited)
        return waited

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
        bad = _invalid_uuids([task_id], "task id") or _invalid_entity(entity_id)
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
        bad = _invalid_uuids(task_ids, "task id") or _invalid_entity(entity_id)
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
        bad = _invalid_entity(entity_id)
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
        bad = _invalid_entity(entity_id)
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
                return _failure(response)
            try:
                page = _page_decoder.decode(response.content)
            except msgspec.DecodeError as exc:
                return _malformed(response, exc)
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
        return response if not isinstance(response, httpx.Response) else _task_result(response)

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
            token = await self._current_token(max_wait_s)
            if not isinstance(token, _Token):
                return token
            headers["authorization"] = f"Bearer {token.value}"
            response = await self._send(
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
                await self._drop_token(token)
        return MoniteUnauthorized("Monite rejected a freshly issued access token")

    async def _send(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        headers: dict[str, str],
        priority: Priority,
        max_wait_s: float | None,
        slot_taken: bool = False,
        **request: Any,
    ) -> httpx.Response | MoniteFailure:
        """Take a budget slot (unless taken), send, record metrics, feed rate headers back."""
        if not slot_taken:
            waited = await self.take_slot(priority, max_wait_s)
            if isinstance(waited, MoniteRateLimited):
                return waited
        try:
            response = await self._http.request(
                method, f"{self._base}{path}", headers=headers, **request
            )
        except httpx.TimeoutException as exc:
            metrics.MONITE_REQUESTS.labels(endpoint, "timeout").inc()
            return MoniteUnavailable(None, f"timed out talking to Monite ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            metrics.MONITE_REQUESTS.labels(endpoint, "network").inc()
            return MoniteUnavailable(None, f"network error talking to Monite: {_describe(exc)}")
        metrics.MONITE_REQUESTS.labels(endpoint, str(response.status_code)).inc()
        await self._budget.observe_headers(response.headers)
        if response.status_code == 429:
            metrics.MONITE_RATE_LIMITED.inc()
            retry_after = _retry_after(response) or _DEFAULT_RETRY_AFTER_S
            # Every process backs off, not just this one: they share Monite's per-client quota.
            await self._budget.pause_for(retry_after)
            return MoniteRateLimited(retry_after)
        return response

    # -- the shared access token -------------------------------------------------------------
    async def _current_token(self, max_wait_s: float | None) -> _Token | MoniteFailure:
        """This process's token if still fresh, else the shared one, fetching it if needed."""
        static = self._settings.monite_token
        if static:
            return _Token(b"", static, math.inf)
        token = self._token
        if token is not None and time.monotonic() < token.fresh_until:
            return token
        async with self._token_lock:
            token = self._token
            if token is not None and time.monotonic() < token.fresh_until:
                return token
            result = await self._shared_token(max_wait_s)
            if isinstance(result, _Token):
                self._token = result
            return result

    async def _shared_token(self, max_wait_s: float | None) -> _Token | MoniteFailure:
        deadline = time.monotonic() + self._lock_ttl_ms / 1000
        while True:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(self._token_key)
                pipe.pttl(self._token_key)
                raw, ttl_ms = await pipe.execute()
            stored = _decode_stored(raw) if ttl_ms > 0 else None
            if stored is not None and ttl_ms > _refresh_window_ms(stored.lifetime_ms):
                return _Token(raw, stored.access_token, _fresh_until(stored, ttl_ms))
            owner = secrets.token_hex(8)
            if await self._redis.set(self._lock_key, owner, nx=True, px=self._lock_ttl_ms):
                try:
                    fetched = await self._fetch_token(max_wait_s)
                finally:
                    await self._delete_if_equal(keys=(self._lock_key,), args=(owner,))
                if isinstance(fetched, _Token) or stored is None:
                    return fetched
            if stored is not None:
                # Due for refresh, which another process is doing (or which just failed): the
                # current token works until it expires, so use it and look again soon.
                return _Token(raw, stored.access_token, time.monotonic() + _TOKEN_WAIT_STEP_S)
            if time.monotonic() > deadline:
                return MoniteUnavailable(None, "timed out waiting for another process's token")
            await asyncio.sleep(_TOKEN_WAIT_STEP_S)

    async def _fetch_token(self, max_wait_s: float | None) -> _Token | MoniteFailure:
        """``POST /auth/token`` (client credentials), stored in Redis for every process."""
        secret = self._settings.monite_client_secret or DEV_MONITE_CLIENT_SECRET
        body = msgspec.json.encode(_TokenRequest(_client_id(self._settings), secret))
        headers = {
            "x-monite-version": self._settings.monite_api_version,
            "content-type": "application/json",
        }
        # The token request waits no longer than a lock holder may take.
        wait = self._settings.monite_timeout_s if max_wait_s is None else max_wait_s
        response = await self._send(
            "auth_token", "POST", "/auth/token", headers, "high", wait, content=body
        )
        if not isinstance(response, httpx.Response):
            metrics.MONITE_TOKEN_FETCHES.labels("unavailable").inc()
            return response
        if response.status_code in (400, 401, 403, 422):
            metrics.MONITE_TOKEN_FETCHES.labels("rejected").inc()
            log.error(
                "Monite rejected the client credentials",
                extra={"status": response.status_code, "client_id": _client_id(self._settings)},
            )
            return MoniteUnauthorized(
                f"Monite rejected the client credentials (HTTP {response.status_code})"
            )
        if not response.is_success:
            metrics.MONITE_TOKEN_FETCHES.labels("unavailable").inc()
            return _failure(response)
        try:
            answer = _token_decoder.decode(response.content)
        except msgspec.DecodeError:
            metrics.MONITE_TOKEN_FETCHES.labels("unavailable").inc()
            # Not _malformed(): its message would quote the body, which holds the token.
            return MoniteUnavailable(response.status_code, "malformed token response from Monite")
        metrics.MONITE_TOKEN_FETCHES.labels("ok").inc()
        lifetime_s = _token_lifetime_s(answer.expires_in)
        log.info("fetched a Monite access token", extra={"expires_in_s": lifetime_s})
        stored = _StoredToken(answer.access_token, lifetime_s * 1000)
        raw = msgspec.msgpack.encode(stored)
        # Redis forgets the token a little before Monite does, so nobody sends an expiring one.
        ttl_ms = stored.lifetime_ms - min(30_000, stored.lifetime_ms // 10)
        await self._redis.set(self._token_key, raw, px=ttl_ms)
        return _Token(raw, stored.access_token, _fresh_until(stored, ttl_ms))

    async def _drop_token(self, token: _Token) -> None:
        """Forget a token Monite refused, unless another process already replaced it."""
        if self._token is not None and self._token.raw == token.raw:
            self._token = None
        await self._delete_if_equal(keys=(self._token_key,), args=(token.raw,))


# -- helpers -------------------------------------------------------------------------------------
def _token_lifetime_s(expires_in: msgspec.Raw) -> int:
    """Seconds to keep a token: ``expires_in`` within 1 s … a day, or a logged fallback.

    A number or a numeric string counts; ``null``, ``true``, text, zero and less do not.
    """
    try:
        seconds = float(bytes(expires_in).strip().strip(b'"'))
    except ValueError:
        seconds = math.nan
    if math.isfinite(seconds) and 0 < seconds <= _MAX_TOKEN_LIFETIME_S:
        return max(1, int(seconds))
    lifetime_s = _MAX_TOKEN_LIFETIME_S if seconds > 0 else _FALLBACK_TOKEN_LIFETIME_S
    log.warning(
        "Monite's token answer has no usable expires_in; keeping the token a bounded time",
        extra={
            "expires_in": bytes(expires_in)[:40].decode(errors="replace"),
            "lifetime_s": lifetime_s,
        },
    )
    return lifetime_s


def _refresh_window_ms(lifetime_ms: int) -> float:
    """Refresh with a fifth of the lifetime (at least a minute) left, but not in the first half."""
    return min(max(lifetime_ms * 0.2, 60_000), lifetime_ms * 0.5)


def _fresh_until(stored: _StoredToken, ttl_ms: float) -> float:
    return time.monotonic() + (ttl_ms - _refresh_window_ms(stored.lifetime_ms)) / 1000


def _decode_stored(raw: bytes | None) -> _StoredToken | None:
    if raw is None:
        return None
    try:
        return _stored_token_decoder.decode(raw)
    except msgspec.DecodeError:
        return None  # an old or foreign value: fetch a new token over it


def _task_result(response: httpx.Response) -> MoniteResult:
    if not response.is_success:
        return _failure(response)
    try:
        _object_decoder.decode(response.content)
    except msgspec.DecodeError as exc:
        return _malformed(response, exc)
    except RecursionError:
        # Well-formed as far as we can tell but nested too deeply to skip: deterministic, so
        # retrying is pointless; the task decoder turns it into an invalid_payload outcome.
        pass
    return MoniteOk(response.status_code, response.content)


def _failure(response: httpx.Response) -> MoniteFailure:
    """Classify a non-2xx answer (429 and 401 never get here: ``_call`` handles them)."""
    status = response.status_code
    if status == 404:
        return MoniteNotFound()
    if status >= 500:
        return MoniteUnavailable(status, _message(response), _retry_after(response))
    return MoniteRejected(status, _message(response))


def _malformed(response: httpx.Response, exc: msgspec.DecodeError) -> MoniteUnavailable:
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


def _retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC))


def _describe(exc: httpx.HTTPError) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _invalid_uuids(values: Sequence[str], what: str) -> MoniteRejected | None:
    for value in values:
        try:
            uuid.UUID(value)
        except ValueError:
            return MoniteRejected(422, f"{what} {value[:64]!r} is not a UUID")
    return None


def _invalid_entity(entity_id: str | None) -> MoniteRejected | None:
    return None if entity_id is None else _invalid_uuids([entity_id], "entity id")
