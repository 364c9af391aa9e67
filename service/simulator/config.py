"""The simulator's configuration: start-up values from the environment, runtime knobs, chaos.

``SimulatorConfig`` is what the process starts with; ``/_sim/reset`` returns to it. ``Knobs`` and
``Chaos`` are the parts the control endpoints may change while the simulator runs.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final

import msgspec

from service.settings import DEV_MONITE_CLIENT_ID, DEV_MONITE_CLIENT_SECRET, SettingsError

# The webhook signing secret used when SIM_WEBHOOK_URL is set without SIM_WEBHOOK_SECRET.
DEV_WEBHOOK_SECRET: Final = "whsec_simulator-dev"  # noqa: S105 - public dev default, not a secret

Rate = Annotated[float, msgspec.Meta(ge=0, le=1)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]
TaskId = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")]
"""A task id as the simulator stores it: a lowercase UUID."""


class Chaos(msgspec.Struct, frozen=True, kw_only=True):
    """Faults injected into ``/v1`` responses; every rate is a probability per request.

    ``list_omit_rate`` is the exception: it is drawn per task of a list answer.
    """

    error_rate: Rate = 0.0
    """Fraction of requests answered 500, 502 or 503 (503 carries ``Retry-After``)."""
    latency_s: Seconds = 0.0
    """Delay added before every request is handled."""
    hang_rate: Rate = 0.0
    """Fraction of requests that get no answer until the client gives up (or ``hang_s``)."""
    hang_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """Longest hang; a request still connected after it gets a 504."""
    malformed_rate: Rate = 0.0
    """Fraction of 2xx responses whose JSON body is cut in half."""
    not_found_ids: frozenset[str] = frozenset()
    """Task ids that answer 404 and are left out of lists, whatever their state."""
    error_ids: frozenset[str] = frozenset()
    """Task ids whose OCR ends in ``error`` (when it finishes) instead of their planned outcome."""
    naive_timestamp_rate: Rate = 0.0
    """Fraction of task reads (one task or a list) whose ``created_at``/``updated_at`` have no
    UTC offset (``2026-11-29T01:02:03.123456``), as Monite has been seen to answer."""
    list_omit_ids: frozenset[TaskId] = frozenset()
    """Task ids that list answers leave out while ``GET /v1/ocr_tasks/{id}`` still answers them."""
    list_omit_rate: Rate = 0.0
    """Chance that a list answer leaves out a task it would show (per task and answer)."""
    get_latency_s: Seconds = 0.0
    """Delay added to ``GET /v1/ocr_tasks/{id}`` only (on top of ``latency_s``)."""


class Knobs(msgspec.Struct, frozen=True, kw_only=True):
    """Behaviour that tests may change at runtime (``PATCH /_sim/settings``)."""

    rate_limit: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """Requests per second per API client (token bucket refill rate)."""
    rate_burst: Annotated[float, msgspec.Meta(ge=1)] = 30.0
    """Token bucket capacity: how many requests may arrive at once."""
    token_ttl_s: Annotated[int, msgspec.Meta(gt=0)] = 86400
    """``expires_in`` of new access tokens."""
    task_duration_s: tuple[Seconds, Seconds] = (3.0, 15.0)
    """Range a new task's processing time is drawn from; ``(0, 0)`` finishes tasks at once."""
    ocr_error_rate: Rate = 0.05
    """Fraction of tasks created through ``/v1`` whose OCR ends in ``error``."""
    mismatch_rate: Rate = 0.1
    """Fraction of generated documents whose line items or totals do not add up."""
    sparse_rate: Rate = 0.1
    """Fraction of generated documents with only a few fields recognized."""
    max_upload_bytes: Annotated[int, msgspec.Meta(gt=0)] = 20 * 1024 * 1024
    """Largest file ``upload_from_file`` accepts; larger gets 413."""
    webhook_url: str | None = None
    """Where ``ocr_task.finished`` events are POSTed; ``None`` sends none."""
    webhook_secret: str = DEV_WEBHOOK_SECRET
    """Key of the ``Monite-Signature`` HMAC."""


class SimulatorConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the simulator starts with. Build it with ``from_env()`` or directly in tests."""

    client_id: str = DEV_MONITE_CLIENT_ID
    client_secret: str = DEV_MONITE_CLIENT_SECRET
    seed: int = 1
    """Seeds generated documents, durations, outcomes and chaos, so runs repeat."""
    knobs: Knobs = Knobs()
    chaos: Chaos = Chaos()

    def __repr__(self) -> str:
        return (
            f"SimulatorConfig(client_id={self.client_id!r}, seed={self.seed}, <secrets redacted>)"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SimulatorConfig:
        """Read ``SIMULATOR_ENV_VARS``; a malformed value raises ``SettingsError`` naming it."""
        env = os.environ if environ is None else environ
        sections: dict[str, dict[str, Any]] = {"config": {}, "knobs": {}, "chaos": {}}
        for var, (section, field, parse) in _ENV.items():
            raw = env.get(var, "").strip()
            if not raw:
                continue
            try:
                sections[section][field] = parse(raw)
            except ValueError as exc:
                raise SettingsError(var, str(exc)) from None
        knob_values = sections["knobs"]
        if "rate_limit" in knob_values and "rate_burst" not in knob_values:
            # A client may send a full second's worth at once unless told otherwise.
            knob_values["rate_burst"] = max(1.0, knob_values["rate_limit"])
        try:
            knobs = msgspec.convert(knob_values, Knobs)
            chaos = msgspec.convert(sections["chaos"], Chaos)
        except msgspec.ValidationError as exc:
            field = str(exc).rpartition("$.")[2].rstrip("`").split("[")[0]
            var = next((v for v, (_, f, _) in _ENV.items() if f == field), "SIM_*")
            raise SettingsError(var, str(exc).partition(" - at")[0]) from None
        return cls(**sections["config"], knobs=knobs, chaos=chaos)


def parse_duration_range(raw: str) -> tuple[float, float]:
    """Parse ``"3-15"`` or ``"0"`` (seconds) into a ``(low, high)`` range."""
    low_text, sep, high_text = raw.partition("-")
    try:
        low = float(low_text)
        high = float(high_text) if sep else low
    except ValueError:
        raise ValueError(f"expected seconds like 3-15 or 0, got {raw!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high < low:
        raise ValueError(f"expected 0 <= low <= high, got {raw!r}")
    return (low, high)


def _number(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {raw!r}")
    return value


def _whole(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None


def _task_ids(raw: str) -> frozenset[str]:
    ids = set()
    for part in raw.split(","):
        if part.strip():
            try:
                ids.add(str(uuid.UUID(part.strip())))
            except ValueError:
                raise ValueError(f"{part.strip()!r} is not a task UUID") from None
    return frozenset(ids)


def _http_url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError(f"expected an http(s) URL, got {raw!r}")
    return raw


def _text(raw: str) -> str:
    return raw


_ENV: Final[dict[str, tuple[str, str, Callable[[str], Any]]]] = {
    "MONITE_CLIENT_ID": ("config", "client_id", _text),
    "MONITE_CLIENT_SECRET": ("config", "client_secret", _text),
    "SIM_SEED": ("config", "seed", _whole),
    "SIM_RATE_LIMIT": ("knobs", "rate_limit", _number),
    "SIM_RATE_BURST": ("knobs", "rate_burst", _number),
    "SIM_TOKEN_TTL_S": ("knobs", "token_ttl_s", _whole),
    "SIM_TASK_DURATION_S": ("knobs", "task_duration_s", parse_duration_range),
    "SIM_OCR_ERROR_RATE": ("knobs", "ocr_error_rate", _number),
    "SIM_MISMATCH_RATE": ("knobs", "mismatch_rate", _number),
    "SIM_SPARSE_RATE": ("knobs", "sparse_rate", _number),
    "SIM_MAX_UPLOAD_BYTES": ("knobs", "max_upload_bytes", _whole),
    "SIM_WEBHOOK_URL": ("knobs", "webhook_url", _http_url),
    "SIM_WEBHOOK_SECRET": ("knobs", "webhook_secret", _text),
    "SIM_ERROR_RATE": ("chaos", "error_rate", _number),
    "SIM_LATENCY_S": ("chaos", "latency_s", _number),
    "SIM_HANG_RATE": ("chaos", "hang_rate", _number),
    "SIM_HANG_S": ("chaos", "hang_s", _number),
    "SIM_MALFORMED_RATE": ("chaos", "malformed_rate", _number),
    "SIM_NOT_FOUND_IDS": ("chaos", "not_found_ids", _task_ids),
    "SIM_ERROR_IDS": ("chaos", "error_ids", _task_ids),
    "SIM_NAIVE_TIMESTAMP_RATE": ("chaos", "naive_timestamp_rate", _number),
    "SIM_LIST_OMIT_IDS": ("chaos", "list_omit_ids", _task_ids),
    "SIM_LIST_OMIT_RATE": ("chaos", "list_omit_rate", _number),
    "SIM_GET_LATENCY_S": ("chaos", "get_latency_s", _number),
}

SIMULATOR_ENV_VARS: Final[tuple[str, ...]] = tuple(_ENV)
