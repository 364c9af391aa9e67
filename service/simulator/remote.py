"""``SimulatorControl``: a typed async client of a running simulator, for tests and benchmarks."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import httpx
import msgspec

from service.simulator.config import Chaos, SimulatorConfig
from service.simulator.control import CreatedTasks
from service.simulator.state import Counters
from service.simulator.tasks import Outcome
from service.simulator.wire import MONITE_API_VERSION, DocumentType, TaskStatus, TokenResponse

T = TypeVar("T")


class SimTask(msgspec.Struct, kw_only=True):
    """A task as the simulator returned it (Monite's task shape)."""

    id: str
    created_at: str
    updated_at: str
    status: TaskStatus
    document_type: DocumentType | None = None
    recognized_data: Any = None


class SimulatorControl:
    """Drives a simulator at ``root_url``: create and finish tasks, chaos, counters, reset.

    ``base_url`` is what ``MONITE_BASE_URL`` should be; ``client_id``/``client_secret`` are the
    credentials the simulator accepts.
    """

    def __init__(self, root_url: str, config: SimulatorConfig, http: httpx.AsyncClient) -> None:
        self.root_url = root_url
        self.base_url = f"{root_url}/v1"
        self.client_id = config.client_id
        self.client_secret = config.client_secret
        self.api_version = MONITE_API_VERSION
        self._http = http

    async def create_task(
        self,
        *,
        entity_id: str | None = None,
        outcome: Outcome = "success",
        document_type: DocumentType | None = None,
        recognized_data: Any = msgspec.UNSET,
        recognized_data_text: str | None = None,
        duration_s: float | None = 0.0,
        task_id: str | None = None,
        notify: bool = True,
    ) -> SimTask:
        """Create a task (finished at once unless ``duration_s`` says otherwise).

        ``recognized_data`` (any JSON value, ``None`` included) is served verbatim on success;
        left out, a document is generated. ``recognized_data_text`` is the same as JSON text, for
        payloads nested too deeply for a JSON decoder. ``duration_s=None`` draws from
        ``task_duration_s``.
        """
        spec: dict[str, Any] = {
            "entity_id": entity_id,
            "outcome": outcome,
            "document_type": document_type,
            "duration_s": duration_s,
            "task_id": task_id,
            "notify": notify,
        }
        if recognized_data is not msgspec.UNSET:
            spec["recognized_data"] = recognized_data
        if recognized_data_text is not None:
            spec["recognized_data_text"] = recognized_data_text
        return await self._call("POST", "/_sim/tasks", SimTask, spec)

    async def create_tasks(
        self,
        count: int,
        *,
        entity_id: str | None = None,
        outcome: Outcome = "success",
        document_type: DocumentType | None = None,
        duration_s: float | None = 0.0,
        notify: bool = True,
    ) -> list[str]:
        """Create ``count`` alike tasks in one request; returns their ids in creation order."""
        spec = {
            "count": count,
            "entity_id": entity_id,
            "outcome": outcome,
            "document_type": document_type,
            "duration_s": duration_s,
            "notify": notify,
        }
        return (await self._call("POST", "/_sim/tasks/batch", CreatedTasks, spec)).ids

    async def complete(self, task_id: str, outcome: Outcome | None = None) -> SimTask:
        """Finish a task now, with its planned outcome or ``outcome``."""
        return await self._call(
            "POST", f"/_sim/tasks/{task_id}/complete", SimTask, {"outcome": outcome}
        )

    async def counters(self) -> Counters:
        """Per-client requests, 429s, statuses by endpoint, 1-second peaks; tasks; webhooks."""
        return await self._call("GET", "/_sim/counters", Counters)

    async def chaos(self, **knobs: Any) -> Chaos:
        """Change fault injection (fields of ``Chaos``); returns what is now in effect."""
        return await self._call("PATCH", "/_sim/chaos", Chaos, knobs)

    async def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change runtime knobs (fields of ``Knobs``: rate_limit, token_ttl_s, webhook_url …)."""
        return await self._call("PATCH", "/_sim/settings", dict[str, Any], knobs)

    async def revoke_tokens(self) -> int:
        """Revoke every access token; returns how many there were."""
        answer = await self._call("POST", "/_sim/tokens/revoke", dict[str, int])
        return answer["revoked"]

    async def reset(self) -> None:
        """Back to the start-up state: no tasks, tokens, counters; configured knobs and chaos."""
        response = await self._http.post(f"{self.root_url}/_sim/reset")
        response.raise_for_status()

    async def token(
        self,
        grant_type: Literal["client_credentials", "entity_user"] = "client_credentials",
        entity_user_id: str | None = None,
    ) -> str:
        """A fresh access token (this request counts for the client like any other)."""
        body = {
            "grant_type": grant_type,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "entity_user_id": entity_user_id,
        }
        answer = await self._call("POST", "/v1/auth/token", TokenResponse, body, self.headers())
        return answer.access_token

    def headers(self, token: str | None = None, entity_id: str | None = None) -> dict[str, str]:
        """Monite request headers: version, and the Bearer token and entity when given."""
        headers = {"x-monite-version": self.api_version}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if entity_id is not None:
            headers["x-monite-entity-id"] = entity_id
        return headers

    async def _call(
        self,
        method: str,
        path: str,
        into: type[T],
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> T:
        content = None if body is None else msgspec.json.encode(body)
        response = await self._http.request(
            method,
            f"{self.root_url}{path}",
            content=content,
            headers={"content-type": "application/json", **(headers or {})},
        )
        if response.is_error:
            raise SimulatorError(f"{method} {path} -> {response.status_code}: {response.text}")
        return msgspec.json.decode(response.content, type=into)


class SimulatorError(Exception):
    """A control request was refused; the message carries the simulator's answer."""
