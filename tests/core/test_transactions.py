"""core.transactions.in_transaction: one transaction where the server has them, and the
`changed_here` announcements of its writes only once they are committed."""

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import PyMongoError

from service.core.context import RequestContext, reset_current_request, set_current_request
from service.core.transactions import in_transaction
from service.core.watch import changed_here
from service.db import MongoDatabase
from service.errors import Conflict

Heard = list[tuple[str, tuple[Any, ...]]]


@pytest.fixture
def heard() -> Iterator[Heard]:
    """What this worker's authentication cache would hear (a request's access listener)."""
    heard: Heard = []
    context = RequestContext("test", access_listener=lambda name, ids: heard.append((name, ids)))
    token = set_current_request(context)
    yield heard
    reset_current_request(token)


@pytest.mark.wire_only  # transactions
async def test_changes_are_announced_once_the_transaction_committed(
    database: MongoDatabase, heard: Heard
) -> None:
    async def steps(session: AsyncClientSession | None) -> str:
        assert session is not None
        await database["things"].insert_one({"x": 1}, session=session)
        changed_here("users", "u1")
        # Not yet: a request reading now would see the state before the commit.
        assert heard == []
        return "done"

    assert await in_transaction(database, steps) == "done"
    assert heard == [("users", ("u1",))]


@pytest.mark.wire_only  # transactions
async def test_changes_of_a_rolled_back_transaction_are_never_announced(
    database: MongoDatabase, heard: Heard
) -> None:
    async def steps(session: AsyncClientSession | None) -> None:
        await database["things"].insert_one({"x": 1}, session=session)
        changed_here("users", "u1")
        raise Conflict("refused")

    with pytest.raises(Conflict):
        await in_transaction(database, steps)
    assert heard == []
    assert await database["things"].count_documents({}) == 0


@pytest.mark.wire_only  # transactions
async def test_a_retried_transaction_announces_only_its_last_attempt(
    database: MongoDatabase, heard: Heard
) -> None:
    attempts = 0

    async def steps(session: AsyncClientSession | None) -> None:
        nonlocal attempts
        attempts += 1
        await database["things"].insert_one({"attempt": attempts}, session=session)
        changed_here("users", f"attempt {attempts}")
        if attempts == 1:
            raise PyMongoError("write conflict", error_labels=["TransientTransactionError"])

    await in_transaction(database, steps)
    assert attempts == 2
    assert heard == [("users", ("attempt 2",))]
    assert [doc["attempt"] for doc in await database["things"].find().to_list(None)] == [2]


@pytest.mark.mock_only  # a standalone server: no transactions
async def test_without_transactions_the_steps_run_without_a_session(
    database: MongoDatabase, heard: Heard
) -> None:
    sessions: list[AsyncClientSession | None] = []

    async def steps(session: AsyncClientSession | None) -> None:
        sessions.append(session)
        changed_here("users", "u1")
        # Each write stands alone: its change is announced at once, as outside any transaction.
        assert heard == [("users", ("u1",))]

    await in_transaction(database, steps)
    assert sessions == [None]
