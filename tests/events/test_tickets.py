"""POST /api/todos/events/ticket: one-time, short-lived, stored only as a hash."""

from datetime import timedelta

import jwt
import pytest
from httpx import AsyncClient

from service.core.clock import utc_now
from service.events.models import EventTicket
from tests.utils import UserAccount


async def ticket_for(client: AsyncClient, user: UserAccount) -> str:
    response = await client.post("/api/todos/events/ticket", headers=user.headers)
    assert response.status_code == 201
    ticket: str = response.json()["ticket"]
    return ticket


async def test_a_ticket_is_stored_only_as_a_hash(client: AsyncClient, alice: UserAccount) -> None:
    ticket = await ticket_for(client, alice)
    stored = await EventTicket.find_all().to_list()
    assert len(stored) == 1
    assert ticket not in stored[0].model_dump_json()
    assert str(stored[0].owner_id) == alice.id


async def test_an_expired_ticket_is_401(client: AsyncClient, alice: UserAccount) -> None:
    ticket = await ticket_for(client, alice)
    await EventTicket.get_pymongo_collection().update_many(
        {}, {"$set": {"expires_at": utc_now() - timedelta(seconds=1)}}
    )
    response = await client.get("/api/todos/events", params={"ticket": ticket})
    assert response.status_code == 401


async def test_tickets_expire_through_a_ttl_index(client: AsyncClient, alice: UserAccount) -> None:
    await ticket_for(client, alice)
    indexes = await EventTicket.get_pymongo_collection().index_information()
    assert indexes["event_tickets_ttl"]["expireAfterSeconds"] == 0


async def test_a_ticket_lives_60_seconds(client: AsyncClient, alice: UserAccount) -> None:
    before = utc_now()
    await ticket_for(client, alice)
    stored = await EventTicket.find_one()
    assert stored is not None
    expires_at = stored.expires_at.replace(tzinfo=before.tzinfo)
    assert before + timedelta(seconds=59) <= expires_at <= utc_now() + timedelta(seconds=60)


@pytest.mark.mock_only
async def test_an_overlong_ticket_is_422(client: AsyncClient) -> None:
    response = await client.get("/api/todos/events", params={"ticket": "t" * 129})
    assert response.status_code == 422


async def test_a_ticket_belongs_to_the_session_that_asked_for_it(
    client: AsyncClient, alice: UserAccount
) -> None:
    await ticket_for(client, alice)
    stored = await EventTicket.find_one()
    assert stored is not None
    session_id = jwt.decode(alice.token, options={"verify_signature": False})["sid"]
    assert str(stored.session_id) == session_id
