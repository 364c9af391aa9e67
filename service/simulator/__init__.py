"""A Monite OCR simulator: an offline stand-in for the parts of Monite's API that ocr-relay uses.

Run it with ``ocr-relay simulator [--host 127.0.0.1] [--port 8100]`` and point the service at
``MONITE_BASE_URL=http://127.0.0.1:8100/v1``. All state is in memory. It shares no code with
``service.domain``, so tests that pass against it check our reading of Monite, not our own echo.

Monite surface (``/v1``, as in ``MONITE_OCR_API.md``)
    ``POST /v1/auth/token`` (``client_credentials`` and ``entity_user`` grants),
    ``POST /v1/auth/revoke``, ``GET /v1/ocr_tasks``, ``POST /v1/ocr_tasks``,
    ``POST /v1/ocr_tasks/upload_from_file``, ``GET /v1/ocr_tasks/{task_id}``.
    Every request needs ``x-monite-version`` (400 ``missing_api_version``), every OCR request a
    Bearer token (401). A partner token acts in the space of the ``x-monite-entity-id`` it sends
    (or, without one, in the partner's own space); an entity-user token in its user's entity.
    Another space's task is 404. Tasks are ``processing`` for their duration, then ``success`` with
    ``recognized_data`` (deterministic from ``SIM_SEED`` and the task id) or ``error``. Each API
    client (the client id behind the token) has a token bucket; over it, 429 with ``Retry-After``.
    Every answer carries ``RateLimit-*``, ``X-RateLimit-*-Second`` and ``x-request-id``.

Control surface (``/_sim``, JSON, no auth, not rate limited; 422 on a malformed body)
    ``POST /_sim/tasks`` → 201 task
        ``{"entity_id": uuid|null, "outcome": "success"|"error"|"never", "document_type": …|null,
        "recognized_data": <any JSON, served verbatim on success>, "duration_s": float|null,
        "task_id": uuid|null, "notify": true}``; all optional. ``never`` stays ``processing``
        until completed; ``duration_s`` null draws from ``task_duration_s``.
    ``POST /_sim/tasks/batch`` → 201 ``{"ids": [...]}``: the same fields (but ``task_id``) plus
        ``"count"`` (1 to 100000): many alike tasks at once, for benchmarks.
    ``POST /_sim/tasks/{id}/complete`` → 200 task. Optional body ``{"outcome": "success"|"error"}``.
    ``GET|PATCH /_sim/chaos``: faults, see ``Chaos`` (``error_rate``, ``latency_s``,
        ``hang_rate``, ``hang_s``, ``malformed_rate``, ``not_found_ids``, ``error_ids``,
        ``naive_timestamp_rate``, ``list_omit_ids``, ``list_omit_rate``, ``get_latency_s``).
    ``GET|PATCH /_sim/settings``: runtime knobs, see ``Knobs`` (``rate_limit``, ``rate_burst``,
        ``token_ttl_s``, ``task_duration_s``, ``ocr_error_rate``, ``mismatch_rate``,
        ``sparse_rate``, ``max_upload_bytes``, ``webhook_url``, ``webhook_secret``).
        A PATCH changes only the fields it names and answers with the result.
    ``POST /_sim/tokens/revoke`` → ``{"revoked": n}``: every token stops working.
    ``GET /_sim/counters`` → ``{"clients": {client_id: {"requests", "throttled",
        "peak_per_second", "by_endpoint": {operation_id: {status: n}}}}, "tasks": n,
        "webhooks": {"delivered", "failed"}}``. Requests without a known client count as
        ``anonymous``; ``peak_per_second`` is the most requests admitted in any sliding second.
    ``POST /_sim/reset`` → 204: no tasks, tokens or counters; knobs and chaos as configured.

Webhooks
    With a ``webhook_url``, a task created with an entity (through ``/v1`` with
    ``x-monite-entity-id``, or through ``/_sim/tasks`` with ``entity_id`` and ``notify``) sends one
    ``ocr_task.finished`` event when it finishes, signed ``Monite-Signature: t=<unix>,v1=<hex
    HMAC-SHA256(webhook_secret, "<t>.<body>")>``; failed POSTs are retried twice.

Environment (``SIMULATOR_ENV_VARS``; a malformed value raises ``SettingsError``)
    ``MONITE_CLIENT_ID``/``MONITE_CLIENT_SECRET`` (default: the dev credentials of
    ``service.settings``), ``SIM_SEED``, ``SIM_RATE_LIMIT`` (30), ``SIM_RATE_BURST`` (= limit),
    ``SIM_TOKEN_TTL_S`` (86400), ``SIM_TASK_DURATION_S`` (``3-15``, or one number such as ``0``),
    ``SIM_OCR_ERROR_RATE`` (0.05), ``SIM_MISMATCH_RATE`` (0.1), ``SIM_SPARSE_RATE`` (0.1),
    ``SIM_MAX_UPLOAD_BYTES`` (20 MiB), ``SIM_WEBHOOK_URL``, ``SIM_WEBHOOK_SECRET``
    (``whsec_simulator-dev``), and chaos: ``SIM_ERROR_RATE``, ``SIM_LATENCY_S``,
    ``SIM_HANG_RATE``, ``SIM_HANG_S`` (60), ``SIM_MALFORMED_RATE``, ``SIM_NOT_FOUND_IDS``,
    ``SIM_ERROR_IDS``, ``SIM_LIST_OMIT_IDS`` (comma-separated task ids),
    ``SIM_NAIVE_TIMESTAMP_RATE``, ``SIM_LIST_OMIT_RATE``, ``SIM_GET_LATENCY_S``.
"""

from service.simulator.app import BackgroundSimulator, create_app, serve
from service.simulator.config import (
    DEV_WEBHOOK_SECRET,
    SIMULATOR_ENV_VARS,
    Chaos,
    Knobs,
    SimulatorConfig,
)
from service.simulator.remote import SimTask, SimulatorControl, SimulatorError

__all__ = [
    "DEV_WEBHOOK_SECRET",
    "SIMULATOR_ENV_VARS",
    "BackgroundSimulator",
    "Chaos",
    "Knobs",
    "SimTask",
    "SimulatorConfig",
    "SimulatorControl",
    "SimulatorError",
    "create_app",
    "serve",
]
