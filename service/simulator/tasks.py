"""Simulated OCR tasks, indexed by id and by entity, with their status computed when read.

No timers: a task is ``processing`` until ``created + duration`` has passed, then it shows its
planned outcome. That keeps tens of thousands of tasks in flight cheap.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Literal

import msgspec

from service.simulator.wire import (
    SIMULATED_OCR_ERROR,
    DocumentType,
    ErrorDetail,
    TaskBody,
    TaskStatus,
)

Outcome = Literal["success", "error", "never"]
PARTNER_SPACE = ""
"""The task space of requests made with a partner token and no ``x-monite-entity-id``."""


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def format_time(epoch: float) -> str:
    """Monite's timestamp format: UTC, microseconds, ``Z``."""
    return format_us(round(epoch * 1_000_000))


def format_us(epoch_us: int) -> str:
    """``format_time`` of a time in whole microseconds since the epoch."""
    return (EPOCH + dt.timedelta(microseconds=epoch_us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Task:
    """One OCR task. ``finished_at`` is ``None`` for tasks that never finish on their own."""

    __slots__ = (
        "created_text",
        "created_us",
        "document_type",
        "entity",
        "finished_at",
        "id",
        "outcome",
        "recognized_data",
        "webhook_api_version",
    )

    def __init__(
        self,
        *,
        task_id: str,
        entity: str,
        created_us: int,
        finished_at: float | None,
        outcome: Literal["success", "error"],
        document_type: DocumentType | None,
        recognized_data: msgspec.Raw | None,
        webhook_api_version: str | None,
    ) -> None:
        self.id = task_id
        self.entity = entity
        self.created_us = created_us
        """Creation time in whole microseconds, exactly as ``created_at`` shows it."""
        self.created_text = format_us(created_us)
        self.finished_at = finished_at
        self.outcome = outcome
        self.document_type = document_type
        self.recognized_data = recognized_data
        self.webhook_api_version = webhook_api_version
        """The API version of the create request when an ``ocr_task.finished`` event is owed."""

    def status(self, now: float, error_ids: frozenset[str]) -> TaskStatus:
        """The status at ``now``; ids in ``error_ids`` finish in ``error``."""
        if self.finished_at is None or now < self.finished_at:
            return "processing"
        return "error" if self.id in error_ids else self.outcome


class TaskStore:
    """All tasks in memory: by id, and per entity in creation order."""

    def __init__(self) -> None:
        self.by_id: dict[str, Task] = {}
        self.by_entity: dict[str, list[Task]] = {}

    def __len__(self) -> int:
        return len(self.by_id)

    def add(self, task: Task) -> None:
        """Store a new task; its id must be unused."""
        self.by_id[task.id] = task
        self.by_entity.setdefault(task.entity, []).append(task)

    def get(self, task_id: str, entity: str) -> Task | None:
        """The task if it exists in that entity's space."""
        task = self.by_id.get(task_id)
        return task if task is not None and task.entity == entity else None

    def of_entity(self, entity: str) -> list[Task]:
        """The entity's tasks in creation order."""
        return self.by_entity.get(entity, [])

    def clear(self) -> None:
        """Forget every task."""
        self.by_id.clear()
        self.by_entity.clear()


def new_task_id() -> str:
    """A fresh task id (UUID 4, as Monite's)."""
    return str(uuid.uuid4())


class TaskView:
    """Renders tasks as Monite does at one moment, generating ``recognized_data`` on first need."""

    __slots__ = ("error_ids", "generate", "naive_timestamps", "now")

    def __init__(
        self,
        error_ids: frozenset[str],
        generate: Callable[[Task, DocumentType], msgspec.Raw],
        now: float | None = None,
        *,
        naive_timestamps: bool = False,
    ) -> None:
        self.now = time.time() if now is None else now
        self.error_ids = error_ids
        self.generate = generate
        self.naive_timestamps = naive_timestamps
        """Render timestamps without their ``Z`` (chaos: no UTC offset at all)."""

    def status(self, task: Task) -> TaskStatus:
        """The task's status at this view's moment."""
        return task.status(self.now, self.error_ids)

    def document_type(self, task: Task) -> DocumentType | None:
        """The requested type, or once the task has finished the detected one."""
        if task.document_type is None and self.status(task) != "processing":
            return detected_type(task.id)
        return task.document_type

    def body(self, task: Task) -> TaskBody:
        """The task as ``OcrTaskResponseSchema``."""
        status = self.status(task)
        created_at = self._timestamp(task.created_text)
        if status == "processing":
            return TaskBody(
                id=task.id,
                created_at=created_at,
                updated_at=created_at,
                status=status,
                document_type=task.document_type or msgspec.UNSET,
            )
        assert task.finished_at is not None  # a finished status implies a finish time
        document_type = task.document_type or detected_type(task.id)
        data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
        if status == "success":
            if task.recognized_data is None:
                task.recognized_data = self.generate(task, document_type)
            data = task.recognized_data
        return TaskBody(
            id=task.id,
            created_at=created_at,
            updated_at=self._timestamp(format_time(task.finished_at)),
            status=status,
            document_type=document_type,
            recognized_data=data,
            error=ErrorDetail(message=SIMULATED_OCR_ERROR) if status == "error" else msgspec.UNSET,
        )

    def bodies(self, tasks: Iterable[Task]) -> list[TaskBody]:
        """Several tasks as ``OcrTaskResponseSchema``."""
        return [self.body(t) for t in tasks]

    def _timestamp(self, text: str) -> str:
        return text.removesuffix("Z") if self.naive_timestamps else text


def detected_type(task_id: str) -> DocumentType:
    """The type Monite "detects" for a task created without one (stable per task)."""
    kinds: tuple[DocumentType, ...] = ("invoice", "invoice", "credit_note", "receipt")
    return kinds[uuid.UUID(task_id).int % len(kinds)]
