"""Queries about the database itself."""

import pymongo

from service.accounts.models import User
from service.core.budget import budgeted


@budgeted
async def ping(*, seconds: float) -> None:
    """Ask the database to answer within `seconds`; raises PyMongoError if it doesn't."""
    with pymongo.timeout(seconds):
        await User.get_pymongo_collection().database.command("ping")
