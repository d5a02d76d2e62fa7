"""GET /api/export's two formats, written as they are read: a list's todos a batch at a time
from one cursor, each batch turned into text and sent before the next is read, so an export
of 10 000 todos holds one batch in memory, never the whole file (bench/export_memory.py
measures the server's memory over a socket)."""

import csv
import io
import json
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from beanie import PydanticObjectId
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from service.core.budget import request_budget
from service.core.schemas import WHITESPACE
from service.lists import service as lists
from service.lists.access import Caller
from service.lists.models import Role
from service.todos import service as todos
from service.todos.models import StoredTodo
from service.todos.schemas import TodoPublic
from service.transfer.limits import ExportSlot
from service.transfer.schemas import EXPORT_VERSION, ExportFormat, ExportTodo

BATCH_SIZE = 500
MEDIA_TYPES = {ExportFormat.JSON: "application/json", ExportFormat.CSV: "text/csv; charset=utf-8"}
CSV_COLUMNS = (
    "list",
    "role",
    "text",
    "notes",
    "completed",
    "completed_at",
    "due",
    "priority",
    "tags",
    "created_at",
    "updated_at",
)
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection, OWASP;
# ASVS 5.0 1.2.10 adds NUL): such a cell is written with a leading `'`, which spreadsheets
# show as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\x00")
# Also when white space or invisible characters come first (notes aren't trimmed): some
# spreadsheets (and "trim spaces" on import) drop them and then see the `=`.
SKIPPED_BEFORE_FORMULA = WHITESPACE + "\x00\u200b\u200c\u200d\u2060\ufeff"


@dataclass(frozen=True, slots=True)
class ExportedList:
    list_id: PydanticObjectId
    name: str
    role: Role
    default: bool
    # Its live todos as the list counts them (MAX_TODOS_PER_LIST): what a progress bar expects.
    todo_count: int = 0


async def readable_lists(caller: Caller) -> list[ExportedList]:
    """The live lists the caller can read, their default list first, then oldest first."""
    if not caller.readable():
        return []
    found = await lists.lists_by_ids(list_ids=caller.readable())
    return [
        ExportedList(
            list_id=stored["_id"],
            name=stored["name"],
            role=caller.roles[stored["_id"]],
            default=stored["_id"] == caller.default_list_id,
            todo_count=stored.get("todo_count", 0),
        )
        for stored in found
        if stored["_id"] in caller.roles
    ]


def filename(export_format: ExportFormat, now: datetime) -> str:
    return f"todos-{now:%Y-%m-%dT%H%M%SZ}.{export_format.value}"


# Told the number of todos of each batch as it is written out (the admin CLI's progress bar).
PageHook = Callable[[int], None]


def _ignore(_: int) -> None:
    pass


async def _todos_of(
    list_id: PydanticObjectId, batch_budget: float, on_page: PageHook
) -> AsyncGenerator[list[ExportTodo], None]:
    """The list's live todos, a batch at a time, in creation order.

    Each batch read has a database budget of its own (`batch_budget`,
    EXPORT_BATCH_DB_BUDGET_MS): a stream of 10 000 todos is many reads, and the request's one
    budget would run out before the stream ends (bench/export_memory.py: it did, at 10 000).
    Not the request's 2 s: on SecantusDB the first read of a list runs its whole find, which
    took longer than that for 10 000 todos on a busy machine (the file was cut short).
    Time spent waiting for the client to take a batch is not database time and counts for
    none. The cursor is closed however the stream ends, also when its client goes away.
    """
    reader = todos.LiveTodos(list_id=list_id, batch_size=BATCH_SIZE)
    try:
        while True:
            with request_budget(batch_budget):
                batch = await reader.next_batch()
            if batch:
                yield [_exported(stored) for stored in batch]
                on_page(len(batch))
            if len(batch) < BATCH_SIZE:
                return
    finally:
        await reader.close()


def _exported(stored: StoredTodo) -> ExportTodo:
    public = TodoPublic.from_stored(stored).model_dump(exclude={"list_id"})
    return ExportTodo.model_validate(public)


def chunks(
    exported: list[ExportedList],
    export_format: ExportFormat,
    now: datetime,
    batch_budget: float,
    on_page: PageHook = _ignore,
) -> AsyncGenerator[str, None]:
    """The export of `exported` in `export_format`, a piece at a time: the body of GET
    /api/export, and what `python -m service export` writes."""
    if export_format is ExportFormat.JSON:
        return json_chunks(exported, now, batch_budget, on_page)
    return csv_chunks(exported, batch_budget, on_page)


async def json_chunks(
    exported: list[ExportedList], now: datetime, batch_budget: float, on_page: PageHook = _ignore
) -> AsyncGenerator[str, None]:
    """The export as one JSON document (schemas.ExportFile), a piece at a time."""
    head = {"version": EXPORT_VERSION, "exported_at": _utc_text(now)}
    yield json.dumps(head)[:-1] + ', "lists": ['
    for index, each in enumerate(exported):
        shown = {"name": each.name, "role": each.role.value, "default": each.default}
        yield ("," if index else "") + json.dumps(shown)[:-1] + ', "todos": ['
        first = True
        async with aclosing(_todos_of(each.list_id, batch_budget, on_page)) as batches:
            async for batch in batches:
                texts = (todo.model_dump_json() for todo in batch)
                yield ("" if first else ",") + ",".join(texts)
                first = False
        yield "]}"
    yield "]}"


def _utc_text(moment: datetime) -> str:
    """A UTC time as the API writes it (pydantic's `Z` form)."""
    return moment.isoformat().replace("+00:00", "Z")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _utc_text(value)
    if isinstance(value, list):
        value = " ".join(value)
    text = str(value)
    formula = text.lstrip(SKIPPED_BEFORE_FORMULA).startswith(FORMULA_STARTS)
    return "'" + text if formula or text.startswith(FORMULA_STARTS) else text


def _csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


async def csv_chunks(
    exported: list[ExportedList], batch_budget: float, on_page: PageHook = _ignore
) -> AsyncGenerator[str, None]:
    """The export as CSV (RFC 4180: quoted where needed, CRLF), one row per todo after a
    header row; tags space-separated."""
    yield _csv_text([list(CSV_COLUMNS)])
    for each in exported:
        async with aclosing(_todos_of(each.list_id, batch_budget, on_page)) as batches:
            async for batch in batches:
                rows = []
                for todo in batch:
                    fields = todo.model_dump()
                    values = {**fields, "list": each.name, "role": each.role.value}
                    rows.append([_cell(values[column]) for column in CSV_COLUMNS])
                yield _csv_text(rows)


class ExportResponse(StreamingResponse):
    """The export's response: its chunks are closed, and its export slot (transfer/limits.py)
    given back, however the response ends (sent whole, client gone, database error,
    cancellation). A client that goes away mid-export gets the response's task cancelled
    (starlette), possibly while it waits to send a chunk: the chunks' generator, suspended at
    that chunk, would then be closed only when the garbage collector finds it, and its
    database cursor with it."""

    def __init__(
        self, chunks: AsyncGenerator[str, None], *, slot: ExportSlot | None = None, **kwargs: Any
    ) -> None:
        super().__init__(chunks, **kwargs)
        self._chunks = chunks
        self._slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Here, not in stream_response: with ASGI spec 2.3 starlette runs that in a task
        # beside a disconnect listener, and this is where both have ended.
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._slot is not None:
                self._slot.release()

    async def stream_response(self, send: Send) -> None:
        async with aclosing(self._chunks):
            await super().stream_response(send)
