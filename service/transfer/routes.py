"""Export everything you can read as JSON or CSV; import such a JSON file as new lists."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import JSONResponse, StreamingResponse

from service.config import Settings
from service.core.clock import utc_now
from service.core.deps import SettingsDep
from service.core.middleware import is_json
from service.core.schemas import NOT_BLANK, ErrorDetail
from service.errors import (
    RETRY_AFTER_HEADER,
    Conflict,
    DatabaseUnavailable,
    ImportsBusy,
    NotFound,
    Unauthorized,
    UnsupportedMediaType,
    error_responses,
)
from service.lists.deps import CurrentCaller
from service.lists.schemas import LIST_NAME_MAX_LENGTH
from service.transfer import exports, limits, service, todoist
from service.transfer.deps import ExportSlotsDep, ImportParserDep
from service.transfer.schemas import ExportFile, ExportFormat, Imported, ImportFile

router = APIRouter(tags=["export and import"], responses=error_responses(Unauthorized))


def _inlined(schema: Any, definitions: dict[str, Any]) -> Any:
    """`schema` with its `$ref`s to `$defs` replaced by the definitions themselves: an
    `openapi_extra` request body can't point into the document's components (the import's
    body is read by hand, for its error paths, so FastAPI doesn't register its model)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inlined(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {key: _inlined(value, definitions) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_inlined(value, definitions) for value in schema]
    return schema


def _import_schema() -> dict[str, Any]:
    schema = ImportFile.model_json_schema()
    definitions = schema.pop("$defs", {})
    inlined: dict[str, Any] = _inlined(schema, definitions)
    return inlined


# Its body is bounded by IMPORT_MAX_BYTES, not MAX_BODY_BYTES (service/app.py tells the
# request middleware).
IMPORT_ROUTE = "/import"

TOO_LARGE_IMPORT = {
    "model": ErrorDetail,
    "description": "The body is larger than IMPORT_MAX_BYTES (declared, or as it streams in).",
}
BUSY_IMPORT = {
    "model": ErrorDetail,
    "description": (
        f"{DatabaseUnavailable.detail}, or: {ImportsBusy.detail} (the server parses a bounded "
        "number of import files at once). Retry after `Retry-After` seconds."
    ),
    "headers": RETRY_AFTER_HEADER,
}

TOO_MANY_EXPORTS = {
    "model": ErrorDetail,
    "description": (
        "You already have EXPORTS_PER_USER exports running: retry after `Retry-After` seconds."
    ),
    "headers": RETRY_AFTER_HEADER,
}
BUSY_EXPORTS = {
    "model": ErrorDetail,
    "description": (
        f"{DatabaseUnavailable.detail}, or: {limits.ExportsBusy.detail} (EXPORTS_PER_WORKER). "
        "Retry after `Retry-After` seconds."
    ),
    "headers": RETRY_AFTER_HEADER,
}

INVALID_IMPORT = {
    "description": (
        "The file is not a valid export (or Todoist CSV), or exceeds IMPORT_MAX_TODOS or "
        "MAX_TODOS_PER_LIST: `detail` lists the first errors, each with its `path` "
        "(`lists[2].todos[7].due`; in a CSV `rows[7].PRIORITY`, rows numbered from the header, "
        "row 1)."
    )
}
IMPORT_MEDIA_TYPES = (
    "Unsupported media type: send an export as application/json, or a Todoist CSV as text/csv"
)
TODOIST_EXAMPLE = (
    "TYPE,CONTENT,DESCRIPTION,PRIORITY,INDENT,AUTHOR,RESPONSIBLE,DATE,DATE_LANG,TIMEZONE\r\n"
    "section,Garden,,,,,,,,\r\n"
    "task,Water the plants @home,Tomatoes first,1,1,Ann (1),,every day,en,Europe/Berlin\r\n"
    "note,The can is in the shed,,,,,,,,\r\n"
    "task,Buy seeds,,4,2,Ann (1),,2026-12-01,en,Europe/Berlin\r\n"
)


@router.get(
    "/export",
    summary="Export every list you can read, with its todos",
    response_class=StreamingResponse,
    responses={
        status.HTTP_200_OK: {
            "model": ExportFile,
            "description": "The export, as an attachment.",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
        status.HTTP_429_TOO_MANY_REQUESTS: TOO_MANY_EXPORTS,
        status.HTTP_503_SERVICE_UNAVAILABLE: BUSY_EXPORTS,
    },
)
async def export(
    caller: CurrentCaller,
    settings: SettingsDep,
    export_slots: ExportSlotsDep,
    export_format: Annotated[
        ExportFormat, Query(alias="format", description="`json` (default) or `csv`.")
    ] = ExportFormat.JSON,
) -> exports.ExportResponse:
    """Every list you can read (owned or shared; `role` is yours in it, `default` marks your
    default list) with its live todos, streamed as one file (`Content-Disposition` names it).

    `json` is `{"version": 1, "exported_at", "lists": [{"name", "role", "default", "todos"}]}`,
    what `POST /api/import` reads. `csv` is one row per todo after a header row, the list's
    name first; tags are space-separated, and a cell starting with `=`, `+`, `-`, `@`, a tab,
    a carriage return or a NUL (also after leading white space) is written with a leading `'`
    so that spreadsheets show it as text.

    At most EXPORTS_PER_USER (2) of your exports run at once (429 with Retry-After for one
    more), and EXPORTS_PER_WORKER (8) of everyone's on a server process (503 with Retry-After).
    """
    # Taken before the export reads anything; the response gives it back when it ends.
    slot = export_slots.take(caller.user_id)
    try:
        now = utc_now()
        exported = await exports.readable_lists(caller)
        batch_budget = settings.export_batch_db_budget_ms / 1000
        name = exports.filename(export_format, now)
        return exports.ExportResponse(
            exports.chunks(exported, export_format, now, batch_budget),
            slot=slot,
            media_type=exports.MEDIA_TYPES[export_format],
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    except BaseException:
        # No response to give it back (the database failed, the request was cancelled).
        slot.release()
        raise


@router.post(
    IMPORT_ROUTE,
    status_code=status.HTTP_201_CREATED,
    summary="Import an export file as new lists of yours",
    response_model=Imported,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _import_schema()},
                todoist.MEDIA_TYPE: {
                    "schema": {
                        "type": "string",
                        "description": "A Todoist project CSV (UTF-8; a BOM is allowed).",
                    },
                    "example": TODOIST_EXAMPLE,
                },
            },
        }
    },
    responses={
        status.HTTP_413_CONTENT_TOO_LARGE: TOO_LARGE_IMPORT,
        status.HTTP_422_UNPROCESSABLE_CONTENT: INVALID_IMPORT,
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: {
            "model": ErrorDetail,
            "description": IMPORT_MEDIA_TYPES,
        },
        status.HTTP_503_SERVICE_UNAVAILABLE: BUSY_IMPORT,
        **error_responses(Conflict, NotFound),
    },
)
async def import_file(
    request: Request,
    caller: CurrentCaller,
    settings: SettingsDep,
    parser: ImportParserDep,
    list_name: Annotated[
        str,
        Query(
            min_length=1,
            max_length=LIST_NAME_MAX_LENGTH,
            pattern=NOT_BLANK,
            description=(
                "The new list's name, for a Todoist CSV (its file has none); ignored for a "
                f"JSON export. 1 to {LIST_NAME_MAX_LENGTH} characters, not all white space."
            ),
        ),
    ] = todoist.DEFAULT_LIST_NAME,
) -> Imported | JSONResponse:
    """Create the lists of an export file (`GET /api/export?format=json`) as new lists you
    own, names kept, with their todos as yours; the list marked `default` fills your default
    list instead. Ids, roles and timestamps in the file are ignored.

    With `Content-Type: text/csv` the body is a Todoist project CSV instead, made into one new
    list named `list_name`: each task a todo (`@labels` as tags, PRIORITY p1..p4 as 3..0, an
    ISO DATE as `due`, other dates, sections, parent tasks and the notes below a task kept in
    its notes); the README says exactly what maps to what. Any other body type is a 415.

    The body may be up to IMPORT_MAX_BYTES (16 MiB by default; 413 above), not
    MAX_BODY_BYTES. The whole file is checked first (at most IMPORT_MAX_TODOS todos; 422 lists
    the first errors with their paths), then written all or nothing (one transaction where
    the database has them): 409 (with nothing written) past MAX_LISTS_PER_USER or
    MAX_TODOS_PER_LIST. 503 with Retry-After when the server is parsing as many files as it
    takes at once.
    """
    # A body without a type is a 415, as on every other JSON route (core/middleware.py).
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    try:
        if media_type == todoist.MEDIA_TYPE:

            def read_todoist(raw: bytes, limits: Settings) -> ImportFile:
                return todoist.read_csv(raw, list_name=list_name, settings=limits)

            file = await parser.parse(await request.body(), settings, read=read_todoist)
        elif is_json(media_type):
            file = await parser.parse(await request.body(), settings)
        else:
            raise UnsupportedMediaType(IMPORT_MEDIA_TYPES)
    except service.ImportInvalid as invalid:
        return JSONResponse({"detail": invalid.errors}, status.HTTP_422_UNPROCESSABLE_CONTENT)
    return await service.import_file(caller=caller, file=file, settings=settings)
