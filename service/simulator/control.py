"""Control endpoints under ``/_sim`` (no auth, no rate limit): see the package docstring."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Final, TypeVar

import msgspec
from litestar import Request, Response, get, patch, post
from litestar.params import FromPath

from service.simulator.config import Chaos, Knobs
from service.simulator.gate import SimulatorDep
from service.simulator.state import Simulator
from service.simulator.tasks import PARTNER_SPACE, Outcome, Task
from service.simulator.wire import (
    MONITE_API_VERSION,
    DocumentType,
    decode_body,
    error_response,
    json_response,
    validation_response,
)

AnyRequest = Request[Any, Any, Any]
S = TypeVar("S", Chaos, Knobs)


class NewTask(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The body of ``POST /_sim/tasks``."""

    entity_id: uuid.UUID | None = None
    """The entity whose space the task lives in; ``None``: requests without an entity header."""
    outcome: Outcome = "success"
    document_type: DocumentType | None = None
    recognized_data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    """Served verbatim when the task succeeds (any JSON); generated when absent."""
    recognized_data_text: str | None = None
    """The same as JSON text, for payloads too deeply nested to pass through a JSON decoder."""
    duration_s: Annotated[float, msgspec.Meta(ge=0)] | None = None
    """Seconds until the task finishes; absent: drawn from ``task_duration_s``."""
    task_id: uuid.UUID | None = None
    """The id to give the task; absent: a fresh UUID."""
    notify: bool = True
    """Send ``ocr_task.finished`` when it finishes (needs an entity and a webhook URL)."""


class NewTasks(NewTask, forbid_unknown_fields=True, kw_only=True):
    """The body of ``POST /_sim/tasks/batch``: a ``NewTask`` without ``task_id``, and a count."""

    count: Annotated[int, msgspec.Meta(ge=1, le=100_000)]


class CreatedTasks(msgspec.Struct):
    """The answer of ``POST /_sim/tasks/batch``."""

    ids: list[str]


class Completion(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The optional body of ``POST /_sim/tasks/{task_id}/complete``."""

    outcome: Outcome | None = None


class Revoked(msgspec.Struct):
    """The answer of ``POST /_sim/tokens/revoke``."""

    revoked: int


@post("/tasks")
async def create_task(request: AnyRequest, sim: SimulatorDep) -> Response[bytes]:
    """Create a task with a chosen outcome, type, payload and duration."""
    spec = decode_body(await request.body(), NewTask)
    if isinstance(spec, Response):
        return spec
    task_id = None if spec.task_id is None else str(spec.task_id)
    if task_id is not None and task_id in sim.tasks.by_id:
        return error_response(409, f"task {task_id} already exists")
    task = _create(sim, spec, task_id)
    return json_response(sim.view().body(task), 201)


@post("/tasks/batch")
async def create_tasks(request: AnyRequest, sim: SimulatorDep) -> Response[bytes]:
    """Create ``count`` alike tasks at once (benchmarks); answers their ids in creation order."""
    spec = decode_body(await request.body(), NewTasks)
    if isinstance(spec, Response):
        return spec
    if spec.task_id is not None:
        return validation_response(["body", "task_id"], "Not allowed in a batch", "extra_forbidden")
    ids = [_create(sim, spec, None).id for _ in range(spec.count)]
    return json_response(CreatedTasks(ids), 201)


def _create(sim: Simulator, spec: NewTask, task_id: str | None) -> Task:
    return sim.create_task(
        entity=PARTNER_SPACE if spec.entity_id is None else str(spec.entity_id),
        outcome=spec.outcome,
        document_type=spec.document_type,
        duration_s=spec.duration_s,
        recognized_data=_payload(spec),
        task_id=task_id,
        notify_version=MONITE_API_VERSION if spec.notify else None,
    )


def _payload(spec: NewTask) -> msgspec.Raw | None:
    if spec.recognized_data_text is not None:
        return msgspec.Raw(spec.recognized_data_text.encode())
    return None if spec.recognized_data is msgspec.UNSET else spec.recognized_data


@post("/tasks/{task_id:str}/complete")
async def complete_task(
    task_id: FromPath[str], request: AnyRequest, sim: SimulatorDep
) -> Response[bytes]:
    """Finish a task now, with its planned outcome or the one given."""
    body = await request.body()
    completion = decode_body(body, Completion) if body.strip() else Completion()
    if isinstance(completion, Response):
        return completion
    task = sim.tasks.by_id.get(task_id.lower())
    if task is None:
        return error_response(404, f"no task {task_id}")
    sim.complete(task, completion.outcome)
    return json_response(sim.view().body(task))


@get("/counters")
async def counters(sim: SimulatorDep) -> Response[bytes]:
    """Requests, 429s, per-endpoint statuses and 1-second peaks per client; task count; webhooks."""
    return json_response(sim.counters())


@post("/reset", status_code=204)
async def reset(sim: SimulatorDep) -> None:
    """Back to the start-up state: no tasks, tokens or counters; configured knobs and chaos."""
    sim.reset()


@get("/chaos")
async def get_chaos(sim: SimulatorDep) -> Response[bytes]:
    """The faults in effect."""
    return json_response(sim.chaos)


@patch("/chaos")
async def patch_chaos(request: AnyRequest, sim: SimulatorDep) -> Response[bytes]:
    """Change some faults; fields left out keep their value."""
    merged = _merge(await request.body(), sim.chaos)
    if isinstance(merged, Response):
        return merged
    sim.chaos = merged
    return json_response(merged)


@get("/settings")
async def get_settings(sim: SimulatorDep) -> Response[bytes]:
    """The runtime knobs in effect (never the webhook secret)."""
    return json_response(_redacted(sim.knobs))


@patch("/settings")
async def patch_settings(request: AnyRequest, sim: SimulatorDep) -> Response[bytes]:
    """Change some knobs (rate limit, token TTL, durations, webhook target …)."""
    merged = _merge(await request.body(), sim.knobs)
    if isinstance(merged, Response):
        return merged
    sim.set_knobs(merged)
    return json_response(_redacted(merged))


@post("/tokens/revoke")
async def revoke_tokens(sim: SimulatorDep) -> Response[bytes]:
    """Revoke every access token: the next request with one gets 401."""
    return json_response(Revoked(sim.tokens.revoke_all()))


def _merge(body: bytes, current: S) -> S | Response[bytes]:
    """``current`` with the fields of a JSON object body replaced, validated as a whole."""
    changes = decode_body(body, dict[str, Any])
    if isinstance(changes, Response):
        return changes
    unknown = sorted(set(changes) - set(current.__struct_fields__))
    if unknown:
        return validation_response(["body", unknown[0]], "Unknown field", "extra_forbidden")
    merged = {**msgspec.structs.asdict(current), **changes}
    return decode_body(msgspec.json.encode(merged), type(current))


def _redacted(knobs: Knobs) -> dict[str, Any]:
    shown = msgspec.to_builtins(knobs)
    shown["webhook_secret"] = "<set>"  # noqa: S105 - a placeholder that hides the secret
    return dict(shown)


ROUTES: Final = (
    create_task,
    create_tasks,
    complete_task,
    counters,
    reset,
    get_chaos,
    patch_chaos,
    get_settings,
    patch_settings,
    revoke_tokens,
)
