"""The todos use cases that are more than one query."""

from beanie import PydanticObjectId
from pymongo.asynchronous.client_session import AsyncClientSession

from service.core.budget import budgeted
from service.todos.models import IdempotencyKey, Todo

# Called by accounts: account deletion (accounts/service.delete_everything_of).


@budgeted
async def delete_todos_of(
    *, owner_id: PydanticObjectId, session: AsyncClientSession | None
) -> None:
    """Delete every todo of the owner, and first their idempotency records: each holds a copy
    of the todo it created. In `session`'s transaction if given."""
    for collection in (IdempotencyKey.get_pymongo_collection(), Todo.get_pymongo_collection()):
        await collection.delete_many({"owner_id": owner_id}, session=session)
