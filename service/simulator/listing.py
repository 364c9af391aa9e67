"""``GET /v1/ocr_tasks``: query parsing, filtering, ordering and cursor pagination.

A ``pagination_token`` is opaque to clients: base64url JSON of the original query plus a cursor
(the sort key of the first or last task of the page it came from), so when a token is present all
other parameters are ignored, as Monite documents, and tasks created meanwhile do not shift pages.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import Literal

import msgspec

from service.simulator.tasks import EPOCH, Task, TaskStore, TaskView
from service.simulator.wire import DOCUMENT_TYPES, TASK_STATUSES, DocumentType, TaskPage, TaskStatus

SortKey = tuple[int, str] | tuple[str]


class ListQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The filters and ordering of a list request, carried inside its pagination tokens."""

    limit: int = 100
    order: Literal["asc", "desc"] = "asc"
    sort: Literal["id", "created_at"] = "created_at"
    created_at__gt: int | None = None
    created_at__lt: int | None = None
    created_at__gte: int | None = None
    created_at__lte: int | None = None
    status: TaskStatus | None = None
    document_type: DocumentType | None = None
    id__in: tuple[str, ...] | None = None


class Cursor(msgspec.Struct, frozen=True):
    """A page boundary: ``after`` (next page) or ``before`` (previous page) a sort key."""

    query: ListQuery
    direction: Literal["after", "before"]
    key: tuple[int | str, ...]


class QueryError(Exception):
    """A query parameter is invalid; ``loc`` and ``msg`` go into a 422 body."""

    def __init__(self, param: str, msg: str) -> None:
        super().__init__(msg)
        self.loc: list[str | int] = ["query", param]
        self.msg = msg


def parse_query(params: Callable[[str], list[str]]) -> ListQuery | Cursor:
    """Read the query (``params(name)`` lists a parameter's values); raise ``QueryError``."""
    token = _single(params, "pagination_token")
    if token is not None:
        return _decode_token(token)
    fields: dict[str, object] = {}
    limit = _single(params, "limit")
    if limit is not None:
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            raise QueryError("limit", "Input should be an integer from 1 to 100")
        fields["limit"] = int(limit)
    for name, allowed in (
        ("order", ("asc", "desc")),
        ("sort", ("id", "created_at")),
        ("status", TASK_STATUSES),
        ("document_type", DOCUMENT_TYPES),
    ):
        value = _single(params, name)
        if value is not None:
            if value not in allowed:
                raise QueryError(name, f"Input should be one of: {', '.join(allowed)}")
            fields[name] = value
    for name in ("created_at__gt", "created_at__lt", "created_at__gte", "created_at__lte"):
        value = _single(params, name)
        if value is not None:
            fields[name] = _timestamp(name, value)
    ids = params("id__in")
    if ids:
        fields["id__in"] = tuple(_uuid("id__in", i) for i in ids)
    return msgspec.convert(fields, ListQuery)


def list_page(
    request: ListQuery | Cursor,
    store: TaskStore,
    entity: str,
    view: TaskView,
    listed: Callable[[str], bool],
) -> TaskPage:
    """One page of the entity's tasks; ids for which ``listed`` is false are left out."""
    query = request.query if isinstance(request, Cursor) else request
    if query.id__in is not None:
        candidates: Sequence[Task] = [
            t for i in dict.fromkeys(query.id__in) if (t := store.get(i, entity)) is not None
        ]
    else:
        candidates = store.of_entity(entity)
    key = _sort_key(query.sort)
    matches = sorted(
        (t for t in candidates if _matches(t, query, view) and listed(t.id)),
        key=key,
        reverse=query.order == "desc",
    )
    start, end = 0, min(query.limit, len(matches))
    if isinstance(request, Cursor):
        boundary = _boundary(matches, key, request)
        if request.direction == "after":
            start, end = boundary, min(boundary + query.limit, len(matches))
        else:
            start, end = max(0, boundary - query.limit), boundary
    page = matches[start:end]
    return TaskPage(
        data=view.bodies(page),
        prev_pagination_token=_token(query, "before", key(page[0])) if page and start > 0 else None,
        next_pagination_token=(
            _token(query, "after", key(page[-1])) if page and end < len(matches) else None
        ),
    )


def _boundary(ordered: list[Task], key: Callable[[Task], SortKey], cursor: Cursor) -> int:
    """Index of the first task past the cursor (``after``), or at or past it (``before``)."""
    mark = tuple(cursor.key)
    desc = cursor.query.order == "desc"
    for index, task in enumerate(ordered):
        here = key(task)
        if here == mark:
            return index + 1 if cursor.direction == "after" else index
        if (here < mark) if desc else (here > mark):
            return index
    return len(ordered)


def _matches(task: Task, query: ListQuery, view: TaskView) -> bool:
    created = task.created_us
    if query.created_at__gt is not None and not created > query.created_at__gt:
        return False
    if query.created_at__gte is not None and not created >= query.created_at__gte:
        return False
    if query.created_at__lt is not None and not created < query.created_at__lt:
        return False
    if query.created_at__lte is not None and not created <= query.created_at__lte:
        return False
    if query.document_type is not None and view.document_type(task) != query.document_type:
        return False
    return query.status is None or view.status(task) == query.status


def _sort_key(sort: str) -> Callable[[Task], SortKey]:
    if sort == "id":
        return lambda t: (t.id,)
    return lambda t: (t.created_us, t.id)


def _token(query: ListQuery, direction: Literal["after", "before"], key: SortKey) -> str:
    raw = msgspec.json.encode(Cursor(query=query, direction=direction, key=tuple(key)))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_token(token: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        cursor = msgspec.json.decode(raw, type=Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise QueryError("pagination_token", "Invalid pagination token") from None
    expected = (str,) if cursor.query.sort == "id" else (int, str)
    if tuple(type(part) for part in cursor.key) != expected:
        raise QueryError("pagination_token", "Invalid pagination token")
    return cursor


def _single(params: Callable[[str], list[str]], name: str) -> str | None:
    values = params(name)
    return values[-1] if values else None


def _timestamp(name: str, value: str) -> int:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(name, "Input should be a valid datetime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


def _uuid(name: str, value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise QueryError(name, "Input should be a valid UUID") from None
