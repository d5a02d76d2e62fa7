"""The worker's import parser (transfer/parsing.py) and export slots (transfer/limits.py),
from the app's state."""

from typing import Annotated

from fastapi import Depends, Request

from service.transfer.limits import ExportSlots
from service.transfer.parsing import ImportParser


async def get_import_parser(request: Request) -> ImportParser:
    imports: ImportParser = request.state.imports
    return imports


ImportParserDep = Annotated[ImportParser, Depends(get_import_parser)]


async def get_export_slots(request: Request) -> ExportSlots:
    slots: ExportSlots = request.state.exports
    return slots


ExportSlotsDep = Annotated[ExportSlots, Depends(get_export_slots)]
