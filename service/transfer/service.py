"""Import: a whole export file validated first, then written all or nothing.

The lists and todos are written with the lists and todos features' own functions, each of
which takes its limit's slot in one conditional update (MAX_LISTS_PER_USER, then
MAX_TODOS_PER_LIST for all of a list's todos at once). Where the server has transactions (a
replica set), all of it is one transaction: a failure (a limit reached, the database gone)
leaves nothing, not even tombstones, and nobody saw any of it. On a standalone server, what
was written is undone by compensating deletes: the todos added to the default list are
withdrawn (as tombstones: they were live a moment, and sync must learn of their removal) and
their slots given back, and each new list is deleted as its owner would delete it.
"""

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

from beanie import PydanticObjectId
from pydantic import ValidationError
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import PyMongoError

from service.config import Settings
from service.core.budget import request_budget, unbudgeted
from service.errors import ServiceError
from service.lists import service as lists
from service.lists.access import Caller
from service.todos import service as todos
from service.transfer.schemas import Imported, ImportFile

# The import's database budget: one REQUEST_DB_BUDGET_MS, and one more for every this many
# documents it writes (a list costs LIST_WRITES). SecantusDB writes a todo in ~3 ms with its
# indexes and change streams (bench/import_cost.py: 5000 todos in 14-21 s), so IMPORT_MAX_TODOS
# never fits one request's 2 s; with a dead database the import still fails within a bound.
DOCUMENTS_PER_BUDGET = 250
LIST_WRITES = 4

# A 422 lists this many errors at most: enough to fix a file in a few rounds, bounded however
# broken the file is.
MAX_ERRORS = 20


class ImportInvalid(Exception):
    """The file's first errors, each with its path: the route answers them as a 422 in
    FastAPI's shape (`loc` from "body") plus a `path` each (`lists[2].todos[7].due`)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} errors")
        self.errors = errors


# A field name in an error's location is cut to this many characters: an unknown field's
# name is the file's own text, and a 422 never repeats what was sent at length.
MAX_NAME_IN_LOC = 64


def _shown(part: int | str) -> int | str:
    if isinstance(part, str) and len(part) > MAX_NAME_IN_LOC:
        return part[:MAX_NAME_IN_LOC] + "…"
    return part


def path_of(loc: tuple[int | str, ...]) -> str:
    """A validation error's location as a path: ("lists", 2, "todos", 7, "due") is
    `lists[2].todos[7].due`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + part
    return path


def error_entry(loc: tuple[int | str, ...], msg: str, kind: str) -> dict[str, Any]:
    """One 422 entry: FastAPI's `type`, `loc` (from "body") and `msg`, plus its `path`; the
    Todoist reader makes its entries with it too."""
    shown = tuple(_shown(part) for part in loc)
    return {"type": kind, "loc": ["body", *shown], "msg": msg, "path": path_of(shown)}


def validate_import(raw: bytes, settings: Settings) -> ImportFile:
    """The file, if it is a valid export within this service's limits; else ImportInvalid
    with its first MAX_ERRORS errors (nothing is written before the whole file passes)."""
    try:
        parsed = ImportFile.model_validate_json(raw)
    except ValidationError as error:
        # Each error's location and message only: `input` would repeat the file's content.
        found = [
            error_entry(tuple(e["loc"]), e["msg"], e["type"])
            for e in error.errors(include_url=False)[:MAX_ERRORS]
        ]
        raise ImportInvalid(found) from None
    errors: list[dict[str, Any]] = []
    total = sum(len(entry.todos) for entry in parsed.lists)
    if total > settings.import_max_todos:
        errors.append(
            error_entry(
                ("lists",),
                f"At most {settings.import_max_todos} todos per import; this file has {total}",
                "too_many_todos",
            )
        )
    for index, entry in enumerate(parsed.lists):
        if len(entry.todos) > settings.max_todos_per_list:
            errors.append(
                error_entry(
                    ("lists", index, "todos"),
                    f"At most {settings.max_todos_per_list} todos per list",
                    "too_many_todos",
                )
            )
    if errors:
        raise ImportInvalid(errors[:MAX_ERRORS])
    return parsed


@dataclass
class _Written:
    """What an import has written so far, to undo it where it was not one transaction."""

    lists: list[PydanticObjectId] = field(default_factory=list)
    default_todos: list[PydanticObjectId] = field(default_factory=list)
    created: int = 0
    # Whether the writes were made in a transaction: its abort undoes them, nothing else may.
    in_transaction: bool = False


@unbudgeted  # its writes are budgeted, on a budget of the import's own size (import_budget)
async def import_file(*, caller: Caller, file: ImportFile, settings: Settings) -> Imported:
    """Create the file's lists (owned by the caller; names kept) and their todos (the
    caller's, whatever the file says), all or nothing. Conflict past MAX_LISTS_PER_USER or
    MAX_TODOS_PER_LIST, with nothing left written.

    One transaction where the server has them; else each write on its own and, if one fails,
    compensating deletes of the others (`_undo`)."""
    written = _Written()

    async def steps(session: AsyncClientSession | None) -> Imported:
        # A transaction may be run again from the start (TransientTransactionError): what the
        # previous attempt wrote was rolled back, its ids and counts go with it.
        written.lists.clear()
        written.default_todos.clear()
        written.created = 0
        written.in_transaction = session is not None
        await _write(caller, file, settings, written, session)
        return Imported(lists=len(written.lists), todos=written.created)

    budget = import_budget(file, settings)
    try:
        with request_budget(budget):
            return await lists.in_transaction(steps)
    except BaseException:
        if not written.in_transaction:
            # The failure may have used up the import's budget (a timeout): the undo gets one
            # of its own, or it would leave everything written.
            with request_budget(budget):
                await _undo(caller, written)
        raise


def import_budget(file: ImportFile, settings: Settings) -> float:
    """Seconds of database time an import of `file` may take, its retries included."""
    documents = sum(LIST_WRITES + len(entry.todos) for entry in file.lists)
    slices = 1 + math.ceil(documents / DOCUMENTS_PER_BUDGET)
    return settings.request_db_budget_ms / 1000 * slices


async def _write(
    caller: Caller,
    file: ImportFile,
    settings: Settings,
    written: _Written,
    session: AsyncClientSession | None,
) -> None:
    """Every list of the file and its todos, one list after the other: per list, its slot
    (MAX_LISTS_PER_USER), the slots of all its todos in one update, then its todos in one
    insert_many, so a transaction of IMPORT_MAX_TODOS todos stays a few round trips long."""
    for entry in file.lists:
        if entry.default:
            list_id = caller.default_list_id
        else:
            made = await lists.create_list(
                caller=caller,
                name=entry.name,
                max_lists=settings.max_lists_per_user,
                session=session,
            )
            list_id = PydanticObjectId(made.id)
            written.lists.append(list_id)
        if not entry.todos:
            continue
        # Slots first, then the todos: the new lists are known to nobody else yet, and
        # the default list goes only with its owner's account, so no deletion can come
        # between the two and strand the todos (todos.service._insert must insert first).
        if not await lists.reserve_todo_slots(
            list_id=list_id,
            count=len(entry.todos),
            max_todos=settings.max_todos_per_list,
            session=session,
        ):
            raise await todos.no_slot(list_id, settings.max_todos_per_list, session)
        batch = [(PydanticObjectId(), todo.fields()) for todo in entry.todos]
        if entry.default:
            written.default_todos.extend(todo_id for todo_id, _ in batch)
        await todos.insert_todos(
            list_id=list_id, created_by=caller.user_id, todos=batch, session=session
        )
        written.created += len(batch)


async def _undo(caller: Caller, written: _Written) -> None:
    """Compensating deletes of what an import wrote before it failed; best effort (the
    database may be what failed): the import's own error is the one reported."""
    if written.default_todos:
        with contextlib.suppress(PyMongoError):
            await todos.delete_todos(list_id=caller.default_list_id, todo_ids=written.default_todos)
            # The slots were all taken before the insert: all go back, inserted or not.
            await lists.release_todo_slots(
                list_id=caller.default_list_id, count=len(written.default_todos)
            )
    for list_id in written.lists:
        with contextlib.suppress(PyMongoError, ServiceError):
            await lists.delete_list(caller=caller, list_id=list_id, versions=None)
