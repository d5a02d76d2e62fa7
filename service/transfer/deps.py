"""The worker's import parser (transfer/parsing.py), from the app's state."""

from typing import Annotated

from fastapi import Depends, Request

from service.transfer.parsing import ImportParser


async def get_import_parser(request: Request) -> ImportParser:
    imports: ImportParser = request.state.imports
    return imports


ImportParserDep = Annotated[ImportParser, Depends(get_import_parser)]
