"""Export everything you can read as JSON or CSV; import such a JSON file as new lists."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import JSONResponse, StreamingResponse

from service.core.clock import utc_now
from service.core.deps import SettingsDep
from service.errors import Conflict, NotFound, Unauthorized, error_responses
from service.lists.deps import CurrentCaller
from service.transfer import exports, service
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


INVALID_IMPORT = {
    "description": (
        "The file is not a valid export, or exceeds IMPORT_MAX_TODOS or MAX_TODOS_PER_LIST: "
        "`detail` lists the first errors, each with its `path` (`lists[2].todos[7].due`)."
    )
}


@router.get(
    "/export",
    summary="Export every list you can read, with its todos",
    response_class=StreamingResponse,
    responses={
        status.HTTP_200_OK: {
            "model": ExportFile,
            "description": "The export, as an attachment.",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
async def export(
    caller: CurrentCaller,
    settings: SettingsDep,
    export_format: Annotated[
        ExportFormat, Query(alias="format", description="`json` (default) or `csv`.")
    ] = ExportFormat.JSON,
) -> exports.ExportResponse:
    """Every list you can read (owned or shared; `role` is yours in it, `default` marks your
    default list) with its live todos, streamed as one file (`Content-Disposition` names it).

    `json` is `{"version": 1, "exported_at", "lists": [{"name", "role", "default", "todos"}]}`,
    what `POST /api/import` reads. `csv` is one row per todo after a header row, the list's
    name first; tags are space-separated, and a cell starting with `=`, `+`, `-`, `@`, a tab
    or a carriage return is written with a leading `'` so that spreadsheets show it as text.
    """
    now = utc_now()
    exported = await exports.readable_lists(caller)
    batch_budget = settings.export_batch_db_budget_ms / 1000
    chunks = (
        exports.json_chunks(exported, now, batch_budget)
        if export_format is ExportFormat.JSON
        else exports.csv_chunks(exported, batch_budget)
    )
    name = exports.filename(export_format, now)
    return exports.ExportResponse(
        chunks,
        media_type=exports.MEDIA_TYPES[export_format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post(
    "/import",
    status_code=status.HTTP_201_CREATED,
    summary="Import an export file as new lists of yours",
    response_model=Imported,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _import_schema()}},
        }
    },
    responses={
        status.HTTP_422_UNPROCESSABLE_CONTENT: INVALID_IMPORT,
        **error_responses(Conflict, NotFound),
    },
)
async def import_file(
    request: Request, caller: CurrentCaller, settings: SettingsDep
) -> Imported | JSONResponse:
    """Create the lists of an export file (`GET /api/export?format=json`) as new lists you
    own, names kept, with their todos as yours; the list marked `default` fills your default
    list instead. Ids, roles and timestamps in the file are ignored.

    The whole file is checked first (at most IMPORT_MAX_TODOS todos; 422 lists the first
    errors with their paths), then written all or nothing: 409 (with nothing written) past
    MAX_LISTS_PER_USER or MAX_TODOS_PER_LIST.
    """
    try:
        file = service.validate_import(await request.body(), settings)
    except service.ImportInvalid as invalid:
        return JSONResponse({"detail": invalid.errors}, status.HTTP_422_UNPROCESSABLE_CONTENT)
    return await service.import_file(caller=caller, file=file, settings=settings)
