"""The change feed's use cases that are more than one query."""

from beanie import PydanticObjectId
from pymongo.asynchronous.client_session import AsyncClientSession

from service.core.budget import budgeted
from service.events.models import EventTicket

# Called by accounts: account deletion (accounts/service.delete_everything_of).


@budgeted
async def delete_tickets_of(
    *, owner_id: PydanticObjectId, session: AsyncClientSession | None
) -> None:
    """Delete every stream ticket of the owner; in `session`'s transaction if given."""
    await EventTicket.get_pymongo_collection().delete_many({"owner_id": owner_id}, session=session)
