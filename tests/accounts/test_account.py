"""PATCH /api/me, PUT /api/me/password and DELETE /api/me."""

import asyncio
from collections import Counter
from typing import Any

import pytest
from beanie import PydanticObjectId
from httpx import AsyncClient, Response

from service.accounts.models import Session, User
from service.db import MongoDatabase, supports_transactions
from service.events.models import EventTicket
from service.todos.models import IdempotencyKey, Todo
from tests.utils import (
    DEFAULT_PASSWORD,
    FakeClock,
    UserAccount,
    create_account,
    create_todo,
    log_in_session,
    new_email,
    refresh,
    sign_up,
)

NEW_PASSWORD = "a brand new passphrase"


async def patch_me(client: AsyncClient, account: UserAccount, **body: Any) -> Response:
    return await client.patch("/api/me", json=body, headers=account.headers)


async def delete_me(client: AsyncClient, headers: dict[str, str], password: str) -> Response:
    return await client.request("DELETE", "/api/me", json={"password": password}, headers=headers)


async def login_status(client: AsyncClient, email: str, password: str) -> int:
    response = await client.post("/api/token", data={"username": email, "password": password})
    return response.status_code


# ---- PATCH /api/me ----


async def test_patch_me_changes_names(client: AsyncClient) -> None:
    account = await create_account(client)
    response = await patch_me(client, account, fname="  Augusta ", lname="King")
    assert response.status_code == 200
    body = response.json()
    assert (body["fname"], body["lname"], body["email"]) == ("Augusta", "King", account.email)
    assert (await client.get("/api/me", headers=account.headers)).json() == body


async def test_patch_me_with_an_empty_body_changes_nothing(client: AsyncClient) -> None:
    account = await create_account(client)
    before = (await client.get("/api/me", headers=account.headers)).json()
    response = await patch_me(client, account)
    assert response.status_code == 200
    assert response.json() == before


async def test_patch_me_changes_email_with_the_right_password(client: AsyncClient) -> None:
    account = await create_account(client)
    response = await patch_me(
        client, account, email="New.Address@Example.com", current_password=DEFAULT_PASSWORD
    )
    assert response.status_code == 200
    assert response.json()["email"] == "new.address@example.com"
    assert await login_status(client, "new.address@example.com", DEFAULT_PASSWORD) == 200
    assert await login_status(client, account.email, DEFAULT_PASSWORD) == 401


async def test_patch_me_with_a_wrong_password_is_400_and_changes_nothing(
    client: AsyncClient,
) -> None:
    account = await create_account(client)
    response = await patch_me(
        client, account, email=new_email(), fname="Eve", current_password="not my password"
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Incorrect password"}
    me = (await client.get("/api/me", headers=account.headers)).json()
    assert (me["email"], me["fname"]) == (account.email, "Ada")


@pytest.mark.mock_only
async def test_patch_me_email_without_current_password_is_422(client: AsyncClient) -> None:
    account = await create_account(client)
    response = await patch_me(client, account, email=new_email())
    assert response.status_code == 422
    assert (await client.get("/api/me", headers=account.headers)).json()["email"] == account.email


async def test_patch_me_to_a_taken_email_is_409(client: AsyncClient) -> None:
    account = await create_account(client)
    other = await sign_up(client)
    response = await patch_me(
        client, account, email=other["email"].upper(), current_password=DEFAULT_PASSWORD
    )
    assert response.status_code == 409
    assert response.json() == {"detail": "Email already registered."}


@pytest.mark.parametrize("settings_overrides", [{"email_change_max_per_user": 3}])
async def test_email_changes_are_limited_per_user_whatever_their_outcome(
    client: AsyncClient, clock: FakeClock
) -> None:
    account = await create_account(client)
    taken = (await sign_up(client))["email"]
    outcomes = [
        await patch_me(client, account, email=taken, current_password=DEFAULT_PASSWORD),
        await patch_me(client, account, email=new_email(), current_password="wrong password"),
        await patch_me(client, account, email=new_email(), current_password=DEFAULT_PASSWORD),
    ]
    assert [response.status_code for response in outcomes] == [409, 400, 200]
    clock.advance(hours=1)
    blocked = await patch_me(client, account, email=new_email(), current_password=DEFAULT_PASSWORD)
    assert blocked.status_code == 429
    assert blocked.json() == {"detail": "Too many email changes; try again later"}
    assert blocked.headers["retry-after"] == str(23 * 3600)
    # Names can still change; another account has its own count; the window ends.
    assert (await patch_me(client, account, fname="Ada")).status_code == 200
    other = await create_account(client)
    free = await patch_me(client, other, email=new_email(), current_password=DEFAULT_PASSWORD)
    assert free.status_code == 200
    clock.advance(hours=23)
    again = await patch_me(client, account, email=new_email(), current_password=DEFAULT_PASSWORD)
    assert again.status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"email_change_max_per_user": 2}])
async def test_parallel_email_changes_cannot_probe_past_the_limit(client: AsyncClient) -> None:
    account = await create_account(client)
    taken = [(await sign_up(client))["email"] for _ in range(2)]
    probes = [*taken, *(new_email() for _ in range(6))]
    responses = await asyncio.gather(
        *(patch_me(client, account, email=e, current_password=DEFAULT_PASSWORD) for e in probes)
    )
    statuses = Counter(response.status_code for response in responses)
    # Never more than the limit get through. (counters.hit reads the count back after
    # its $inc, so a racing request may see a later count: fewer may get through, not more.)
    assert 1 <= statuses[200] + statuses[409] <= 2
    assert statuses[429] == len(probes) - statuses[200] - statuses[409]


@pytest.mark.parametrize(
    ("email", "why"),
    [
        pytest.param("\u0440aypal@example.com", "local part mixes Cyrillic and Latin", id="local"),
        pytest.param("paypal@ex\u0430mple.com", "domain mixes Cyrillic and Latin", id="domain"),
        pytest.param("g\u03bfogle@example.com", "local part mixes Greek and Latin", id="greek"),
    ],
)
@pytest.mark.mock_only
async def test_patch_me_refuses_an_email_mixing_scripts(
    client: AsyncClient, email: str, why: str
) -> None:
    account = await create_account(client)
    response = await patch_me(client, account, email=email, current_password=DEFAULT_PASSWORD)
    assert response.status_code == 422
    assert why in response.json()["detail"][0]["msg"]
    assert (await client.get("/api/me", headers=account.headers)).json()["email"] == account.email


async def test_patch_me_stores_the_email_normalised(client: AsyncClient) -> None:
    account = await create_account(client)
    fullwidth = "\uff2e\uff25\uff37@Example.COM"  # NEW in fullwidth letters
    response = await patch_me(client, account, email=fullwidth, current_password=DEFAULT_PASSWORD)
    assert response.status_code == 200
    assert response.json()["email"] == "new@example.com"
    assert await login_status(client, "new@example.com", DEFAULT_PASSWORD) == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"fname": ""}, id="empty-fname"),
        pytest.param({"lname": "x" * 101}, id="long-lname"),
        pytest.param({"fname": None}, id="null-fname"),
        pytest.param({"email": "nope", "current_password": DEFAULT_PASSWORD}, id="bad-email"),
        pytest.param({"hashed_password": "x"}, id="unknown-field"),
        pytest.param({"current_password": "p" * 129}, id="long-password"),
    ],
)
@pytest.mark.mock_only
async def test_patch_me_rejects_invalid_input_with_422(
    client: AsyncClient, body: dict[str, Any]
) -> None:
    account = await create_account(client)
    response = await patch_me(client, account, **body)
    assert response.status_code == 422


@pytest.mark.mock_only
async def test_patch_me_without_a_token_is_401(client: AsyncClient) -> None:
    assert (await client.patch("/api/me", json={"fname": "X"})).status_code == 401


# ---- PUT /api/me/password ----


async def test_password_change_revokes_every_session_and_the_old_password(
    client: AsyncClient,
) -> None:
    account = await create_account(client)
    other = await log_in_session(client, account.email)
    response = await client.put(
        "/api/me/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert response.status_code == 204
    for headers in (account.headers, other.headers):
        assert (await client.get("/api/me", headers=headers)).status_code == 401
    assert (await refresh(client, other.refresh_token)).status_code == 401
    assert await login_status(client, account.email, DEFAULT_PASSWORD) == 401
    assert await login_status(client, account.email, NEW_PASSWORD) == 200


async def test_password_change_with_a_wrong_current_password_is_400(
    client: AsyncClient,
) -> None:
    account = await create_account(client)
    response = await client.put(
        "/api/me/password",
        json={"current_password": "wrong password", "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Incorrect password"}
    assert (await client.get("/api/me", headers=account.headers)).status_code == 200
    assert await login_status(client, account.email, DEFAULT_PASSWORD) == 200


@pytest.mark.parametrize("new_password", ["sh0rt!", "p" * 129])
@pytest.mark.mock_only
async def test_password_change_follows_the_signup_rules(
    client: AsyncClient, new_password: str
) -> None:
    account = await create_account(client)
    response = await client.put(
        "/api/me/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": new_password},
        headers=account.headers,
    )
    assert response.status_code == 422
    assert new_password not in response.text
    assert (await client.get("/api/me", headers=account.headers)).status_code == 200


# ---- DELETE /api/me ----


async def test_delete_me_removes_the_user_todos_and_sessions(client: AsyncClient) -> None:
    account = await create_account(client)
    second = await log_in_session(client, account.email)
    await create_todo(client, account)
    await create_todo(client, account, "walk the dog")
    bystander = await create_account(client)
    await create_todo(client, bystander)

    response = await delete_me(client, account.headers, DEFAULT_PASSWORD)
    assert response.status_code == 204
    assert await User.find(User.email == account.email).count() == 0
    # The todos of the user's default list (its id is the user's) are tombstones now.
    live = {"list_id": PydanticObjectId(account.id), "deleted_at": None}
    assert await Todo.find(live).count() == 0
    assert await Session.find({"user_id": PydanticObjectId(account.id)}).count() == 0
    for headers in (account.headers, second.headers):
        assert (await client.get("/api/me", headers=headers)).status_code == 401
    assert (await refresh(client, second.refresh_token)).status_code == 401
    # Nobody else's data goes with it.
    assert (await client.get("/api/todos", headers=bystander.headers)).json()["items"]


async def test_delete_me_removes_its_idempotency_records_and_tickets(
    client: AsyncClient,
) -> None:
    # An idempotency record keeps a copy of the todo it created (its text) for 24 hours.
    account = await create_account(client)
    bystander = await create_account(client)
    for user in (account, bystander):
        headers = {**user.headers, "Idempotency-Key": "key-1"}
        response = await client.post("/api/todos", json={"text": "secret"}, headers=headers)
        assert response.status_code == 201
        ticket = await client.post("/api/todos/events/ticket", headers=user.headers)
        assert ticket.status_code == 201
    user_id = PydanticObjectId(account.id)
    assert await IdempotencyKey.find({"owner_id": user_id}).count() == 1

    assert (await delete_me(client, account.headers, DEFAULT_PASSWORD)).status_code == 204
    assert await IdempotencyKey.find({"owner_id": user_id}).count() == 0
    assert await EventTicket.find({"owner_id": user_id}).count() == 0
    others = PydanticObjectId(bystander.id)
    assert await IdempotencyKey.find({"owner_id": others}).count() == 1
    assert await EventTicket.find({"owner_id": others}).count() == 1


async def test_deleted_email_can_sign_up_again(client: AsyncClient) -> None:
    account = await create_account(client)
    await delete_me(client, account.headers, DEFAULT_PASSWORD)
    again = await create_account(client, email=account.email)
    assert again.id != account.id
    assert (await client.get("/api/todos", headers=again.headers)).json()["items"] == []


async def test_delete_me_with_a_wrong_password_is_400_and_deletes_nothing(
    client: AsyncClient,
) -> None:
    account = await create_account(client)
    await create_todo(client, account)
    response = await delete_me(client, account.headers, "wrong password")
    assert response.status_code == 400
    assert response.json() == {"detail": "Incorrect password"}
    assert (await client.get("/api/todos", headers=account.headers)).json()["items"]


@pytest.mark.mock_only
async def test_delete_me_without_a_body_is_422(client: AsyncClient) -> None:
    account = await create_account(client)
    response = await client.delete("/api/me", headers=account.headers)
    assert response.status_code == 422


async def test_transactions_are_detected_on_the_wire_tier_only(
    database: MongoDatabase, tier: str
) -> None:
    assert await supports_transactions(database) is (tier == "wire")
