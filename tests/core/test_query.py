"""core/query: a query string read into one model, with FastAPI's errors and documentation."""

from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Query
from httpx import ASGITransport, AsyncClient
from pydantic import BaseModel, Field

from service.core.query import query_parameters, query_reader
from service.errors import install_error_handlers
from service.todos.schemas import TodoQuery, TodoSort


class Probe(BaseModel):
    limit: Annotated[int, Field(ge=1, le=10)] = 5
    tag: list[str] | None = None
    sort: TodoSort | None = None


def probe_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/read", openapi_extra=query_parameters(Probe))
    async def read(query: Annotated[Probe, Depends(query_reader(Probe))]) -> Probe:
        return query

    @app.get("/fastapi")
    async def fastapi_reads(query: Annotated[Probe, Query()]) -> Probe:
        return query

    return app


@pytest.mark.parametrize(
    "query",
    [
        "",
        "limit=7",
        "tag=a&tag=b&sort=due",
        "limit=0",
        "limit=x&sort=nope",
        "tag=a&unknown=1",
        "limit=3&limit=4",
    ],
)
async def test_reads_and_refuses_a_query_exactly_as_fastapis_query_model(query: str) -> None:
    app = probe_app()
    async with AsyncClient(transport=ASGITransport(app), base_url="http://t") as client:
        ours = await client.get(f"/read?{query}")
        theirs = await client.get(f"/fastapi?{query}")
    assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json())


def test_documents_the_parameters_fastapi_would_with_references_inlined() -> None:
    schema = probe_app().openapi()
    ours = schema["paths"]["/read"]["get"]["parameters"]
    theirs = schema["paths"]["/fastapi"]["get"]["parameters"]
    assert [p["name"] for p in ours] == [p["name"] for p in theirs] == ["limit", "tag", "sort"]
    sort = next(p for p in ours if p["name"] == "sort")
    assert "$ref" not in str(sort)
    assert {"enum": [s.value for s in TodoSort]}.items() <= sort["schema"]["anyOf"][0].items()
    read, fastapi_reads = (schema["paths"][path]["get"] for path in ("/read", "/fastapi"))
    assert read["responses"]["422"] == fastapi_reads["responses"]["422"]


def test_the_todo_query_documents_all_its_fields() -> None:
    names = [p["name"] for p in query_parameters(TodoQuery)["parameters"]]
    assert names == list(TodoQuery.model_fields)
