"""A Todoist project CSV, read as an import file of one new list.

Todoist documents the file (https://todoist.com/help/articles/format-a-csv-file-to-import-into-
todoist-UVUXTmm6, and "Import or export a project as a CSV file"): one project per file, a
header row, then one row per task, section or note. TYPE is `task`, `section` or `note`
(lowercase); CONTENT the task's name (`@label` words are its labels), the section's name or the
note's text; a note belongs to the task above it. PRIORITY is 1 (p1, highest) to 4 (p4, lowest;
what Todoist's own exports write for a task without a priority), and an empty cell is p1;
INDENT 1 is a top-level task, 2 a sub-task, and so on, empty is 1. DATE is the due date as
typed into Todoist ("tomorrow", "every day", "2026-12-01"). The other columns (AUTHOR,
RESPONSIBLE, DATE_LANG, TIMEZONE, DURATION, DURATION_UNIT, DEADLINE, DEADLINE_LANG) and any
column Todoist adds later are optional.

The file is turned into the JSON import file (`ImportFile`, one list that is not the default)
and checked by the same validation as a JSON import, whose error paths are mapped back to the
file's rows and columns: nothing here writes, and there is no second import path.

What maps to what (the README says the same to users):
- a task becomes a todo: its text is CONTENT without the `@label` words that can be tags
  (TAG_PATTERN, at most MAX_TAGS); other `@` words stay in the text, so nothing is lost;
- PRIORITY p1..p4 becomes 3..0 (p4 is Todoist's "no priority"); empty is p1, as documented;
- DATE becomes `due` if it is a due this service reads exactly (an ISO date, or a datetime with
  an offset); anything else (natural language, a recurrence, a local time) is kept as a line
  of the notes, `Todoist date: every day`: guessing a date from words would be wrong silently;
- the notes are DESCRIPTION, then a block of `Todoist ...:` lines (section, parent task,
  date, deadline, duration), then the text of each note row below the task;
- sub-tasks become todos of their own (todos here have no sub-tasks), noting their parent;
- a section is not a todo: its name goes to the notes of the tasks under it (a section name is
  free text; made into a tag it would be mangled);
- AUTHOR and RESPONSIBLE are ignored (the importer owns everything), and so are DATE_LANG and
  DEADLINE_LANG (the date's words are kept as written).
"""

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from service.config import Settings
from service.core.schemas import WHITESPACE
from service.todos.schemas import (
    MAX_TAGS,
    PRIORITY_MAX,
    TAG_PATTERN,
    TODO_NOTES_MAX_LENGTH,
    check_due,
)
from service.transfer import service
from service.transfer.schemas import EXPORT_VERSION, ImportFile

MEDIA_TYPE = "text/csv"
DEFAULT_LIST_NAME = "Todoist"
# Rows are numbered as a spreadsheet shows them: the header is row 1, the first task row 2
# (a cell holding a line break is still one row).
HEADER_ROW = 1
REQUIRED_COLUMNS = ("TYPE", "CONTENT")
COLUMNS = (
    "TYPE",
    "CONTENT",
    "DESCRIPTION",
    "PRIORITY",
    "INDENT",
    "AUTHOR",
    "RESPONSIBLE",
    "DATE",
    "DATE_LANG",
    "TIMEZONE",
    "DURATION",
    "DURATION_UNIT",
    "DEADLINE",
    "DEADLINE_LANG",
)
ROW_TYPES = ("task", "section", "note")
# No cell of the file can be longer than the longest field it may fill (the notes): bounds
# the work per cell before anything else looks at it.
MAX_CELL_LENGTH = TODO_NOTES_MAX_LENGTH
# Todoist's p1 (PRIORITY 1, its highest) is our highest, its p4 (4, "no priority") our 0.
PRIORITIES = {str(p): PRIORITY_MAX + 1 - p for p in range(1, 5)}
EMPTY_PRIORITY = PRIORITIES["1"]  # "Leaving this cell empty will automatically add p1"
INDENT_PATTERN = re.compile(r"[1-9][0-9]{0,2}")
# A label is a word that starts with `@` (an email address is not: `@` is inside a word); the
# blanks before it go with it, so that "Call @phone mom" becomes "Call mom".
LABEL = re.compile(r"(?P<lead>[ \t]*)(?<!\S)@(?P<name>\S+)")
TAG = re.compile(TAG_PATTERN)
# Where a validation error of the JSON import file points in the CSV.
FIELD_COLUMNS = {
    "text": "CONTENT",
    "tags": "CONTENT",
    "notes": "DESCRIPTION",
    "due": "DATE",
    "priority": "PRIORITY",
}


# One 422 entry, in the JSON import's shape: `loc` from "body" and its `path`.
error = service.error_entry


def cell_error(row: int, column: str, msg: str, kind: str) -> dict[str, Any]:
    return error(("rows", row, column), msg, kind)


@dataclass
class _Task:
    """A task row on its way to an import file's todo."""

    row: int
    text: str
    tags: list[str]
    priority: int
    due: str | None
    notes: str

    def add_note(self, text: str) -> str | None:
        """Append a note row's text; the error message if the notes would get too long."""
        notes = f"{self.notes}\n\n{text}" if self.notes else text
        if len(notes) > TODO_NOTES_MAX_LENGTH:
            return _notes_too_long(self.row)
        self.notes = notes
        return None

    def todo(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "notes": self.notes,
            "due": self.due,
            "priority": self.priority,
            "tags": self.tags,
        }


def _notes_too_long(task_row: int) -> str:
    return (
        f"The notes of the task in row {task_row} (its DESCRIPTION, the `Todoist ...:` lines "
        f"and its notes) would be longer than {TODO_NOTES_MAX_LENGTH} characters"
    )


@dataclass
class _Reader:
    """The state of a pass over the rows: errors found, tasks made, what a row belongs to."""

    errors: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[_Task] = field(default_factory=list)
    section: str | None = None
    # The task the next note row belongs to: the last task, unless a section came since.
    current: _Task | None = None
    # The text of the last task at each indent, for a sub-task's "parent" line.
    parents: dict[int, str] = field(default_factory=dict)

    def fail(self, row: int, column: str, msg: str, kind: str) -> None:
        self.errors.append(cell_error(row, column, msg, kind))

    def read_row(self, row: int, cells: dict[str, str]) -> None:
        for column, value in cells.items():
            if len(value) > MAX_CELL_LENGTH:
                self.fail(row, column, f"At most {MAX_CELL_LENGTH} characters", "cell_too_long")
                return
        kind = cells["TYPE"].strip(WHITESPACE)
        if kind == "task":
            self._task(row, cells)
        elif kind == "section":
            name = cells["CONTENT"].strip(WHITESPACE)
            self.section = name or None
            self.current = None
            self.parents = {}
        elif kind == "note":
            self._note(row, cells["CONTENT"])
        else:
            self.fail(
                row,
                "TYPE",
                "Must be task, section or note (lowercase, as Todoist writes it)",
                "row_type_invalid",
            )

    def _task(self, row: int, cells: dict[str, str]) -> None:
        priority_cell = cells["PRIORITY"].strip(WHITESPACE)
        priority = PRIORITIES.get(priority_cell, EMPTY_PRIORITY if not priority_cell else None)
        if priority is None:
            self.fail(
                row, "PRIORITY", "Must be 1 (p1, highest) to 4 (p4), or empty", "priority_invalid"
            )
        indent_cell = cells["INDENT"].strip(WHITESPACE) or "1"
        if not INDENT_PATTERN.fullmatch(indent_cell):
            msg = "Must be a whole number from 1 (top level) to 999, or empty"
            self.fail(row, "INDENT", msg, "indent_invalid")
            return
        if priority is None:
            return
        text, tags = split_labels(cells["CONTENT"])
        indent = int(indent_cell)
        parent = self.parents.get(indent - 1) if indent > 1 else None
        self.parents = {level: t for level, t in self.parents.items() if level < indent}
        self.parents[indent] = text.strip(WHITESPACE)
        due, date_line = _due(cells["DATE"], cells["TIMEZONE"])
        lines = [
            f"Todoist section: {self.section}" if self.section else "",
            f"Todoist sub-task of: {parent}" if parent else "",
            date_line,
            _line("deadline", cells["DEADLINE"]),
            _line("duration", f"{cells['DURATION']} {cells['DURATION_UNIT']}")
            if cells["DURATION"].strip(WHITESPACE)
            else "",
        ]
        blocks = [cells["DESCRIPTION"], "\n".join(line for line in lines if line)]
        notes = "\n\n".join(block for block in blocks if block.strip(WHITESPACE))
        task = _Task(row=row, text=text, tags=tags, priority=priority, due=due, notes=notes)
        if len(notes) > TODO_NOTES_MAX_LENGTH:
            self.fail(row, "DESCRIPTION", _notes_too_long(row), "notes_too_long")
        self.tasks.append(task)
        self.current = task

    def _note(self, row: int, content: str) -> None:
        if self.current is None:
            self.fail(
                row,
                "TYPE",
                "A note must come after the task it belongs to (in the same section)",
                "note_without_task",
            )
            return
        if not content.strip(WHITESPACE):
            return  # an empty note adds nothing
        problem = self.current.add_note(content)
        if problem is not None:
            self.fail(row, "CONTENT", problem, "notes_too_long")


def _line(name: str, value: str) -> str:
    value = value.strip(WHITESPACE)
    return f"Todoist {name}: {value}" if value else ""


def _due(date: str, timezone: str) -> tuple[str | None, str]:
    """(the due, the notes line): the date as a due if it is one exactly as this service
    takes it; else no due and the date kept as written (with its time zone, if any)."""
    date = date.strip(WHITESPACE)
    if not date:
        return None, ""
    try:
        return check_due(date), ""
    except ValueError:
        pass
    zone = timezone.strip(WHITESPACE)
    return None, _line("date", f"{date} ({zone})" if zone else date)


def split_labels(content: str) -> tuple[str, list[str]]:
    """(text, tags) of a task's CONTENT: each `@word` that is a valid tag, up to MAX_TAGS
    distinct ones, is taken out of the text as a tag; other `@` words stay in the text. If
    nothing but labels is left, the text is CONTENT as it was (a todo needs a text)."""
    tags: list[str] = []

    def take(match: re.Match[str]) -> str:
        name = match["name"]
        if not TAG.fullmatch(name):
            return match[0]
        lowered = name.lower()
        if lowered not in tags:
            if len(tags) == MAX_TAGS:
                return match[0]
            tags.append(lowered)
        return ""

    text = LABEL.sub(take, content)
    return (text if text.strip(WHITESPACE) else content), tags


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of each row; _NotCsv (with the row it was reading) if the file
    isn't CSV (a quote left open, a character after a closing quote)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    row = HEADER_ROW - 1
    while True:
        row += 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as problem:
            raise _NotCsv(row, str(problem)) from None
        yield row, record


class _NotCsv(Exception):
    def __init__(self, row: int, problem: str) -> None:
        super().__init__(problem)
        self.row = row
        self.problem = problem


def _header(cells: list[str]) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Column name -> index of the known columns, and the header's errors."""
    names = [cell.strip(WHITESPACE) for cell in cells]
    found: dict[str, int] = {}
    errors = []
    for index, name in enumerate(names):
        if name in COLUMNS:
            if name in found:
                errors.append(
                    cell_error(HEADER_ROW, name, f"Column {name} appears twice", "header_invalid")
                )
            found[name] = index
    for name in REQUIRED_COLUMNS:
        if name not in found:
            errors.append(
                error(
                    ("rows", HEADER_ROW),
                    f"The header row has no {name} column (a Todoist CSV starts with "
                    f"{','.join(COLUMNS[:5])},...)",
                    "header_missing",
                )
            )
    return found, errors


def read_csv(raw: bytes, *, list_name: str, settings: Settings) -> ImportFile:
    """The file as an import file of one new list named `list_name`, if it is a Todoist CSV
    within this service's limits; else service.ImportInvalid with its first errors, each with
    its path (`rows[7].PRIORITY`: row 7 as a spreadsheet numbers it, header = row 1)."""
    try:
        # utf-8-sig: a byte order mark at the start (spreadsheets write one) is not content.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as problem:
        msg = f"The file must be UTF-8; byte {problem.start} is not"
        raise service.ImportInvalid([error((), msg, "utf8_invalid")]) from None
    reader = _Reader()
    try:
        records = _records(text)
        first = next(records, None)
        if first is None:
            msg = "The file is empty: a Todoist CSV starts with a header row"
            raise service.ImportInvalid([error(("rows", HEADER_ROW), msg, "header_missing")])
        columns, header_errors = _header(first[1])
        if header_errors:
            raise service.ImportInvalid(header_errors[: service.MAX_ERRORS])
        width = len(first[1])
        for row, record in records:
            if not any(cell.strip(WHITESPACE) for cell in record):
                continue  # a blank row (Todoist's exports have some) is nothing
            if any(cell.strip(WHITESPACE) for cell in record[width:]):
                msg = f"This row has {len(record)} cells; the header has {width}"
                reader.errors.append(error(("rows", row), msg, "row_too_long"))
            else:
                cells = {
                    name: record[columns[name]]
                    if name in columns and columns[name] < len(record)
                    else ""
                    for name in COLUMNS
                }
                reader.read_row(row, cells)
            if len(reader.errors) >= service.MAX_ERRORS:
                break
    except _NotCsv as problem:
        reader.errors.append(error(("rows", problem.row), f"Not CSV: {problem.problem}", "csv"))
    if reader.errors:
        raise service.ImportInvalid(reader.errors[: service.MAX_ERRORS])
    file = {
        "version": EXPORT_VERSION,
        "lists": [{"name": list_name, "todos": [task.todo() for task in reader.tasks]}],
    }
    try:
        return service.validate_import(json.dumps(file).encode(), settings)
    except service.ImportInvalid as invalid:
        rows = [task.row for task in reader.tasks]
        raise service.ImportInvalid([_in_rows(each, rows) for each in invalid.errors]) from None


def _in_rows(found: dict[str, Any], rows: list[int]) -> dict[str, Any]:
    """An error of the import file made from the CSV, pointed at the CSV's row and column."""
    loc = found["loc"][1:]  # after "body"
    match loc:
        case ["lists", 0, "todos", int(index), str(name), *_]:
            where: tuple[int | str, ...] = ("rows", rows[index], FIELD_COLUMNS.get(name, name))
        case ["lists", 0, "name", *_]:
            return {**found, "loc": ["query", "list_name"], "path": "list_name"}
        case _:
            # The file's todo count (IMPORT_MAX_TODOS, MAX_TODOS_PER_LIST): the rows as a whole.
            where = ("rows",)
    return {**found, "loc": ["body", *where], "path": service.path_of(where)}
