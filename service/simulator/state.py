"""The simulator's whole in-memory world: tasks, tokens, rate limits, knobs, chaos, webhooks."""

from __future__ import annotations

import functools
import random
import time
from typing import Final

import msgspec

from service.simulator import documents
from service.simulator.config import Chaos, Knobs, SimulatorConfig
from service.simulator.ratelimit import ClientCounters, RateLimiter
from service.simulator.tasks import PARTNER_SPACE, Outcome, Task, TaskStore, TaskView, new_task_id
from service.simulator.tokens import TokenRegistry
from service.simulator.webhooks import WebhookCounters, WebhookSender, finished_event
from service.simulator.wire import DocumentType


class Counters(msgspec.Struct, kw_only=True):
    """``GET /_sim/counters``."""

    clients: dict[str, ClientCounters]
    tasks: int
    webhooks: WebhookCounters


_TIMER_MARGIN_S: Final = 0.01


class Simulator:
    """Holds the state the HTTP handlers read and change; ``reset()`` returns to the config."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.knobs: Knobs = config.knobs
        self.chaos: Chaos = config.chaos
        self.rng = random.Random(config.seed)
        self.tasks = TaskStore()
        self.tokens = TokenRegistry()
        self.limiter = RateLimiter(config.knobs.rate_limit, config.knobs.rate_burst)
        self.webhooks = WebhookSender()
        self._notified: set[str] = set()

    def reset(self) -> None:
        """Forget tasks, tokens, counters and pending webhooks; knobs and chaos as configured."""
        self.webhooks.cancel()
        self.webhooks.counters = WebhookCounters()
        self.tasks.clear()
        self.tokens.revoke_all()
        self.limiter.clear()
        self._notified.clear()
        self.rng.seed(self.config.seed)
        self.chaos = self.config.chaos
        self.set_knobs(self.config.knobs)

    def set_knobs(self, knobs: Knobs) -> None:
        """Adopt new runtime knobs."""
        self.knobs = knobs
        self.limiter.configure(knobs.rate_limit, knobs.rate_burst)

    def view(self) -> TaskView:
        """Tasks as they look now."""
        return TaskView(self.chaos.error_ids, self._generate)

    def read_view(self) -> TaskView:
        """Tasks as a ``/v1`` read answers them now: chaos may drop the timestamps' UTC offset."""
        rate = self.chaos.naive_timestamp_rate
        naive = bool(rate) and self.rng.random() < rate
        return TaskView(self.chaos.error_ids, self._generate, naive_timestamps=naive)

    def listed(self, task_id: str) -> bool:
        """Whether a list answer shows the task, or chaos leaves it out (``not_found_ids``,
        ``list_omit_ids``, ``list_omit_rate``)."""
        chaos = self.chaos
        if task_id in chaos.not_found_ids or task_id in chaos.list_omit_ids:
            return False
        return not (chaos.list_omit_rate and self.rng.random() < chaos.list_omit_rate)

    def counters(self) -> Counters:
        """Counters of every client, the task count and webhook outcomes."""
        return Counters(
            clients=self.limiter.counters(), tasks=len(self.tasks), webhooks=self.webhooks.counters
        )

    def draw_outcome(self) -> Outcome:
        """The planned outcome of a task created through the Monite API."""
        return "error" if self.rng.random() < self.knobs.ocr_error_rate else "success"

    def create_task(
        self,
        *,
        entity: str,
        outcome: Outcome,
        document_type: DocumentType | None,
        duration_s: float | None = None,
        recognized_data: msgspec.Raw | None = None,
        task_id: str | None = None,
        notify_version: str | None = None,
    ) -> Task:
        """Store a new task; ``notify_version`` set means an ``ocr_task.finished`` event is owed."""
        now_us = time.time_ns() // 1000
        now = now_us / 1_000_000
        if duration_s is None:
            duration_s = self.rng.uniform(*self.knobs.task_duration_s)
        task = Task(
            task_id=task_id or new_task_id(),
            entity=entity,
            created_us=now_us,
            finished_at=None if outcome == "never" else now + duration_s,
            outcome="error" if outcome == "error" else "success",
            document_type=document_type,
            recognized_data=recognized_data,
            webhook_api_version=notify_version if entity != PARTNER_SPACE else None,
        )
        self.tasks.add(task)
        if task.finished_at is not None:
            # The event loop's timer may fire a little before the wall clock reaches finished_at
            # (monotonic vs wall time, timer granularity): a margin keeps the task finished then.
            self._schedule_webhook(task, task.finished_at - now + _TIMER_MARGIN_S)
        return task

    def complete(self, task: Task, outcome: Outcome | None) -> None:
        """Finish a task now, with ``outcome`` or its planned one (``never`` means success)."""
        now = time.time()
        if task.finished_at is None or task.finished_at > now:
            task.finished_at = now
        if outcome is not None and outcome != "never":
            task.outcome = outcome
        self._schedule_webhook(task, 0.0)

    def _schedule_webhook(self, task: Task, delay_s: float) -> None:
        url = self.knobs.webhook_url
        if task.webhook_api_version is None or url is None:
            return
        self.webhooks.schedule(
            delay_s, url, self.knobs.webhook_secret, functools.partial(self._event_body, task)
        )

    def _event_body(self, task: Task) -> bytes | None:
        """The event for a finished task, once; ``None`` if it is not finished or already sent."""
        status = self.view().status(task)
        if status == "processing" or task.id in self._notified or task.webhook_api_version is None:
            return None
        self._notified.add(task.id)
        return finished_event(task.id, task.entity, status, task.webhook_api_version)

    def _generate(self, task: Task, document_type: DocumentType) -> msgspec.Raw:
        return msgspec.Raw(
            documents.generate(
                self.config.seed,
                task.id,
                document_type,
                mismatch_rate=self.knobs.mismatch_rate,
                sparse_rate=self.knobs.sparse_rate,
            )
        )
