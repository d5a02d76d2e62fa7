"""Multi-document transactions, where the server has them.

A replica set or mongos runs several writes as one transaction; a standalone server (the mock
tier, a development mongod) has none, and the use case then runs its steps one by one with no
session, in an order (or with compensating writes) that leaves a consistent state wherever it
stops. Both accounts and the import use this one runner.
"""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from service.core.watch import changes_held
from service.db import supports_transactions

R = TypeVar("R")

# A step of a multi-collection write: given the transaction's session, or None where the
# server has no transactions.
TransactionSteps = Callable[[AsyncClientSession | None], Awaitable[R]]

# The commit's outcome is unknown (the connection dropped while it ran): it may have happened.
UNKNOWN_COMMIT = "UnknownTransactionCommitResult"


async def in_transaction(database: AsyncDatabase[dict[str, Any]], steps: TransactionSteps[R]) -> R:
    """`steps(session)` in one transaction where the server has them, else `steps(None)`.

    `with_transaction` runs `steps` again from the start after a TransientTransactionError (a
    write conflict with a parallel transaction, an election): everything an attempt decides
    (ids, counts) must be decided inside it. The `changed_here` calls its writes make are
    announced once the commit succeeded (core.watch.changes_held): those of a rolled-back
    attempt never are.
    """
    if not await supports_transactions(database):
        return await steps(None)
    with changes_held() as held:

        async def attempt(session: AsyncClientSession) -> R:
            held.forget()  # a retried attempt: the previous one was rolled back
            return await steps(session)

        try:
            async with database.client.start_session() as session:
                result = await session.with_transaction(attempt)
        except PyMongoError as error:
            # The commit may have happened: an announcement too many costs the cache a read,
            # one too few would let it trust what changed.
            if error.has_error_label(UNKNOWN_COMMIT):
                held.announce()
            raise
    held.announce()
    return result
