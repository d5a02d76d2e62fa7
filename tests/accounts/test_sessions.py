import asyncio
import re
from datetime import datetime, timedelta

import jwt
import pytest
from bson import ObjectId
from httpx import AsyncClient
from starlette.types import ASGIApp

from service.accounts.models import REFRESH_HASHES_KEPT, Session
from service.accounts.tokens import hash_refresh_token, new_session_id
from service.app import create_app
from service.config import Settings
from service.core.clock import as_utc
from service.db import MongoDatabase
from tests.conftest import TEST_SECRET_KEY
from tests.utils import (
    FakeClock,
    Login,
    app_client,
    client_at,
    create_account,
    log_in_session,
    refresh,
    sign_up,
)


async def new_login(client: AsyncClient, **headers: str) -> Login:
    user = await sign_up(client)
    return await log_in_session(client, user["email"], headers=headers or None)


async def is_accepted(client: AsyncClient, access_token: str) -> bool:
    response = await client.get("/api/me", headers={"Authorization": f"Bearer {access_token}"})
    assert response.status_code in {200, 401}, response.text
    return response.status_code == 200


# ---- login ----


async def test_login_answers_a_refresh_token_and_starts_a_session(client: AsyncClient) -> None:
    login = await new_login(client)
    claims = jwt.decode(
        login.access_token, TEST_SECRET_KEY, algorithms=["HS256"], audience="todo-service"
    )
    assert claims["typ"] == "access"
    session = await Session.get(claims["sid"])
    assert session is not None
    assert str(session.user_id) == claims["sub"]
    assert not session.revoked
    # Only the hash is stored, never the token.
    assert session.refresh_hash == hash_refresh_token(login.refresh_token)
    assert login.refresh_token not in session.model_dump_json()


async def test_refresh_token_has_at_least_256_random_bits(client: AsyncClient) -> None:
    login = await new_login(client)
    session_id, _, secret = login.refresh_token.partition(".")
    assert session_id == login.session_id
    assert len(secret) * 6 >= 256  # base64url characters


async def test_session_expires_after_refresh_token_expire_days(
    client: AsyncClient, clock: FakeClock, settings: Settings
) -> None:
    login = await new_login(client)
    session = await Session.get(login.session_id)
    assert session is not None
    lifetime = session.expires_at - session.created_at
    assert lifetime.total_seconds() == settings.refresh_token_expire_days * 86400


# ---- refresh and rotation ----


async def test_refresh_answers_a_new_access_and_refresh_token(client: AsyncClient) -> None:
    login = await new_login(client)
    response = await refresh(client, login.refresh_token)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 30 * 60
    assert body["refresh_token"] != login.refresh_token
    renewed = Login(body["access_token"], body["refresh_token"])
    assert renewed.session_id == login.session_id
    assert await is_accepted(client, renewed.access_token)
    # And the new refresh token rotates again.
    assert (await refresh(client, renewed.refresh_token)).status_code == 200


async def test_refresh_updates_last_used_at(client: AsyncClient, clock: FakeClock) -> None:
    login = await new_login(client)
    clock.advance(hours=1)
    assert (await refresh(client, login.refresh_token)).status_code == 200
    session = await Session.get(login.session_id)
    assert session is not None
    assert as_utc(session.last_used_at) == clock.now
    assert as_utc(session.created_at) < clock.now


async def test_rotated_token_reused_after_the_grace_window_revokes_the_session(
    client: AsyncClient, clock: FakeClock
) -> None:
    login = await new_login(client)
    body = (await refresh(client, login.refresh_token)).json()
    clock.advance(seconds=11)
    reused = await refresh(client, login.refresh_token)
    assert reused.status_code == 401
    assert reused.headers["www-authenticate"] == "Bearer"
    # The whole session is gone: the newest refresh token and every access token of it.
    assert (await refresh(client, body["refresh_token"])).status_code == 401
    assert not await is_accepted(client, body["access_token"])
    assert not await is_accepted(client, login.access_token)


async def test_older_rotated_token_revokes_the_session_even_within_the_grace_window(
    client: AsyncClient,
) -> None:
    login = await new_login(client)
    second = (await refresh(client, login.refresh_token)).json()
    third = (await refresh(client, second["refresh_token"])).json()
    # The first token is two rotations old: no grace for it.
    assert (await refresh(client, login.refresh_token)).status_code == 401
    assert (await refresh(client, third["refresh_token"])).status_code == 401
    assert not await is_accepted(client, third["access_token"])


async def test_previous_token_within_the_grace_window_is_refused_without_revoking(
    client: AsyncClient, clock: FakeClock
) -> None:
    login = await new_login(client)
    body = (await refresh(client, login.refresh_token)).json()
    clock.advance(seconds=10)
    assert (await refresh(client, login.refresh_token)).status_code == 401
    assert await is_accepted(client, body["access_token"])
    assert (await refresh(client, body["refresh_token"])).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"refresh_reuse_grace_seconds": 0}])
async def test_zero_grace_window_treats_an_immediate_reuse_as_theft(
    client: AsyncClient,
) -> None:
    login = await new_login(client)
    body = (await refresh(client, login.refresh_token)).json()
    assert (await refresh(client, login.refresh_token)).status_code == 401
    assert (await refresh(client, body["refresh_token"])).status_code == 401


async def test_concurrent_refreshes_with_one_token_let_exactly_one_succeed(
    client: AsyncClient,
) -> None:
    login = await new_login(client)
    responses = await asyncio.gather(*(refresh(client, login.refresh_token) for _ in range(5)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 401, 401, 401, 401]
    (winner,) = [response.json() for response in responses if response.status_code == 200]
    # The losers came within the grace window: the session lives on.
    assert await is_accepted(client, winner["access_token"])
    assert (await refresh(client, winner["refresh_token"])).status_code == 200


async def test_session_lifetime_is_absolute_from_login(
    client: AsyncClient, clock: FakeClock
) -> None:
    login = await new_login(client)
    clock.advance(days=29)
    body = (await refresh(client, login.refresh_token)).json()
    clock.advance(days=1, seconds=1)
    # The TTL monitor may not have run: the stored expiry decides.
    assert await Session.get(login.session_id) is not None
    assert (await refresh(client, body["refresh_token"])).status_code == 401
    assert not await is_accepted(client, body["access_token"])


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("not-a-refresh-token", id="garbage"),
        pytest.param("A" * 22 + "." + "A" * 43, id="unknown-session"),
        # From before session ids were random: still 401 (log in again), not 422.
        pytest.param("0123456789abcdef01234567." + "A" * 43, id="object-id-session"),
        pytest.param("x" * 69, id="too-long"),
    ],
)
async def test_unusable_refresh_tokens_are_401_or_422(client: AsyncClient, token: str) -> None:
    response = await refresh(client, token)
    assert response.status_code in {401, 422}
    if 0 < len(token) <= 68:
        assert response.status_code == 401
        assert response.json() == {"detail": "Invalid refresh token"}


async def test_a_made_up_secret_for_a_live_session_does_not_end_it(client: AsyncClient) -> None:
    # Knowing a session's id (it is in every access token) is not enough to end it: only a
    # token the session really issued counts as reuse.
    login = await new_login(client)
    forged = f"{login.session_id}.{'A' * 43}"
    response = await refresh(client, forged)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid refresh token"}
    assert await is_accepted(client, login.access_token)
    assert (await refresh(client, login.refresh_token)).status_code == 200


async def test_a_made_up_secret_after_rotations_does_not_end_the_session(
    client: AsyncClient, clock: FakeClock
) -> None:
    login = await new_login(client)
    current = login.refresh_token
    for _ in range(3):
        current = (await refresh(client, current)).json()["refresh_token"]
    clock.advance(seconds=11)
    assert (await refresh(client, f"{login.session_id}.{'B' * 43}")).status_code == 401
    assert (await refresh(client, current)).status_code == 200


async def test_a_token_rotated_away_long_ago_still_revokes_the_session(
    client: AsyncClient, clock: FakeClock
) -> None:
    login = await new_login(client)
    current = login.refresh_token
    for _ in range(REFRESH_HASHES_KEPT):
        clock.advance(minutes=30)
        current = (await refresh(client, current)).json()["refresh_token"]
    # The very first token, REFRESH_HASHES_KEPT rotations old, is still remembered.
    assert (await refresh(client, login.refresh_token)).status_code == 401
    assert (await refresh(client, current)).status_code == 401


async def test_a_session_remembers_a_bounded_number_of_replaced_tokens(
    client: AsyncClient,
) -> None:
    login = await new_login(client)
    current = login.refresh_token
    for _ in range(REFRESH_HASHES_KEPT + 5):
        current = (await refresh(client, current)).json()["refresh_token"]
    session = await Session.get(login.session_id)
    assert session is not None
    assert len(session.previous_hashes) == REFRESH_HASHES_KEPT
    assert session.refresh_hash == hash_refresh_token(current)
    # Forgotten: too old to tell from a made-up token, so just invalid.
    assert hash_refresh_token(login.refresh_token) not in session.previous_hashes
    assert (await refresh(client, login.refresh_token)).status_code == 401
    assert (await refresh(client, current)).status_code == 200


async def test_session_ids_are_random_not_object_ids(client: AsyncClient) -> None:
    user = await sign_up(client)
    logins = [await log_in_session(client, user["email"]) for _ in range(3)]
    ids = [login.session_id for login in logins]
    assert len(set(ids)) == 3
    for session_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", session_id)  # 128 random bits
        assert not re.fullmatch(r"[0-9a-f]{24}", session_id)
    listed = (await client.get("/api/sessions", headers=logins[0].headers)).json()
    assert {s["id"] for s in listed} == set(ids)


async def test_an_access_token_naming_an_object_id_session_is_401(client: AsyncClient) -> None:
    account = await create_account(client)
    claims = jwt.decode(
        account.token, TEST_SECRET_KEY, algorithms=["HS256"], audience="todo-service"
    )
    claims["sid"] = "0123456789abcdef01234567"
    token = jwt.encode(claims, TEST_SECRET_KEY, algorithm="HS256")
    assert not await is_accepted(client, token)


async def test_sessions_stored_under_object_ids_are_deleted_at_startup(
    database: MongoDatabase, settings: Settings, clock: FakeClock
) -> None:
    legacy = {
        "_id": ObjectId(),
        "user_id": ObjectId(),
        "created_at": clock.now,
        "last_used_at": clock.now,
        "expires_at": clock.now + timedelta(days=30),
        "revoked": False,
        "refresh_hash": "0" * 64,
    }
    await database["sessions"].insert_one(legacy)
    async with app_client(create_app(settings, database=database, clock=clock)) as client:
        assert await database["sessions"].count_documents({}) == 0
        login = await new_login(client)
        sessions = (await client.get("/api/sessions", headers=login.headers)).json()
        assert [s["id"] for s in sessions] == [login.session_id]


@pytest.mark.mock_only
async def test_refresh_body_rejects_unknown_fields(client: AsyncClient) -> None:
    login = await new_login(client)
    response = await client.post(
        "/api/token/refresh", json={"refresh_token": login.refresh_token, "extra": 1}
    )
    assert response.status_code == 422


async def test_refresh_token_as_bearer_token_is_401(client: AsyncClient) -> None:
    login = await new_login(client)
    response = await client.get(
        "/api/me", headers={"Authorization": f"Bearer {login.refresh_token}"}
    )
    assert response.status_code == 401


async def test_access_token_as_refresh_token_is_401(client: AsyncClient) -> None:
    login = await new_login(client)
    response = await client.post(
        "/api/token/refresh", json={"refresh_token": login.access_token[:68]}
    )
    assert response.status_code == 401


# ---- logout ----


async def test_logout_revokes_the_access_token_at_once(client: AsyncClient) -> None:
    login = await new_login(client)
    response = await client.post("/api/logout", headers=login.headers)
    assert response.status_code == 204
    assert not await is_accepted(client, login.access_token)
    assert (await refresh(client, login.refresh_token)).status_code == 401


async def test_logout_leaves_other_sessions_alone(client: AsyncClient) -> None:
    user = await sign_up(client)
    first = await log_in_session(client, user["email"])
    second = await log_in_session(client, user["email"])
    await client.post("/api/logout", headers=first.headers)
    assert await is_accepted(client, second.access_token)


async def test_logout_all_revokes_every_session(client: AsyncClient) -> None:
    user = await sign_up(client)
    logins = [await log_in_session(client, user["email"]) for _ in range(3)]
    other = await new_login(client)
    response = await client.post("/api/logout/all", headers=logins[0].headers)
    assert response.status_code == 204
    for login in logins:
        assert not await is_accepted(client, login.access_token)
        assert (await refresh(client, login.refresh_token)).status_code == 401
    assert await is_accepted(client, other.access_token)


@pytest.mark.mock_only
async def test_logout_without_a_token_is_401(client: AsyncClient) -> None:
    assert (await client.post("/api/logout")).status_code == 401
    assert (await client.post("/api/logout/all")).status_code == 401


# ---- listing and revoking sessions ----


async def test_sessions_lists_active_sessions_with_current_marked(
    client: AsyncClient, clock: FakeClock
) -> None:
    user = await sign_up(client)
    phone = await log_in_session(client, user["email"], headers={"User-Agent": "phone/1.0"})
    clock.advance(seconds=1)
    laptop = await log_in_session(client, user["email"], headers={"User-Agent": "laptop/2.0"})
    gone = await log_in_session(client, user["email"])
    await client.post("/api/logout", headers=gone.headers)
    await new_login(client)  # someone else's session

    response = await client.get("/api/sessions", headers=laptop.headers)
    assert response.status_code == 200
    sessions = response.json()
    assert [s["id"] for s in sessions] == [laptop.session_id, phone.session_id]
    assert [s["current"] for s in sessions] == [True, False]
    assert [s["user_agent"] for s in sessions] == ["laptop/2.0", "phone/1.0"]
    assert {s["ip"] for s in sessions} == {"127.0.0.1"}
    assert set(sessions[0]) == {
        "id",
        "created_at",
        "last_used_at",
        "expires_at",
        "user_agent",
        "ip",
        "current",
    }


async def test_sessions_are_listed_newest_first_by_creation_time(
    client: AsyncClient, clock: FakeClock
) -> None:
    user = await sign_up(client)
    logins = []
    for _ in range(5):
        logins.append(await log_in_session(client, user["email"]))
        clock.advance(seconds=1)
    sessions = (await client.get("/api/sessions", headers=logins[0].headers)).json()
    assert [s["id"] for s in sessions] == [login.session_id for login in reversed(logins)]
    limited = await client.get("/api/sessions?limit=2", headers=logins[0].headers)
    assert [s["id"] for s in limited.json()] == [logins[4].session_id, logins[3].session_id]


@pytest.mark.parametrize("settings_overrides", [{"max_sessions_per_user": 2}])
async def test_a_login_past_the_session_cap_ends_the_oldest_session(
    client: AsyncClient, clock: FakeClock
) -> None:
    user = await sign_up(client)
    logins = []
    for _ in range(3):
        logins.append(await log_in_session(client, user["email"]))
        clock.advance(seconds=1)
    assert not await is_accepted(client, logins[0].access_token)
    assert (await refresh(client, logins[0].refresh_token)).status_code == 401
    sessions = (await client.get("/api/sessions", headers=logins[2].headers)).json()
    assert [s["id"] for s in sessions] == [logins[2].session_id, logins[1].session_id]


async def test_sessions_stores_a_long_user_agent_cut_short(client: AsyncClient) -> None:
    login = await new_login(client, **{"User-Agent": "x" * 5000})
    (session,) = (await client.get("/api/sessions", headers=login.headers)).json()
    assert session["user_agent"] == "x" * 256


async def test_sessions_leaves_out_expired_sessions(client: AsyncClient, clock: FakeClock) -> None:
    user = await sign_up(client)
    old = await log_in_session(client, user["email"])
    clock.advance(days=29)
    new = await log_in_session(client, user["email"])
    clock.advance(days=2)
    sessions = (await client.get("/api/sessions", headers=new.headers)).json()
    assert [s["id"] for s in sessions] == [new.session_id]
    assert old.session_id != new.session_id


async def test_revoking_one_of_my_sessions_ends_it(client: AsyncClient) -> None:
    user = await sign_up(client)
    here = await log_in_session(client, user["email"])
    there = await log_in_session(client, user["email"])
    response = await client.delete(f"/api/sessions/{there.session_id}", headers=here.headers)
    assert response.status_code == 204
    assert not await is_accepted(client, there.access_token)
    assert (await refresh(client, there.refresh_token)).status_code == 401
    assert await is_accepted(client, here.access_token)


async def test_revoking_someone_elses_session_is_404(client: AsyncClient) -> None:
    mine = await new_login(client)
    theirs = await new_login(client)
    response = await client.delete(f"/api/sessions/{theirs.session_id}", headers=mine.headers)
    assert response.status_code == 404
    assert response.json() == {"detail": "Session not found"}
    assert await is_accepted(client, theirs.access_token)


async def test_revoking_an_unknown_session_is_404(client: AsyncClient) -> None:
    login = await new_login(client)
    response = await client.delete(f"/api/sessions/{new_session_id()}", headers=login.headers)
    assert response.status_code == 404


@pytest.mark.mock_only
async def test_revoking_an_object_id_is_422(client: AsyncClient) -> None:
    login = await new_login(client)
    response = await client.delete("/api/sessions/0123456789abcdef01234567", headers=login.headers)
    assert response.status_code == 422


@pytest.mark.mock_only
async def test_revoking_a_malformed_session_id_is_422(client: AsyncClient) -> None:
    login = await new_login(client)
    response = await client.delete("/api/sessions/not-an-id", headers=login.headers)
    assert response.status_code == 422


async def test_access_token_of_a_deleted_session_is_401(client: AsyncClient) -> None:
    account = await create_account(client)
    await Session.find_all().delete()
    assert not await is_accepted(client, account.token)


# ---- revoked sessions go within a day ----


async def stored_expiry(session_id: str) -> datetime:
    session = await Session.get(session_id)
    assert session is not None
    return as_utc(session.expires_at)


async def test_a_logged_out_session_expires_within_a_day(
    client: AsyncClient, clock: FakeClock
) -> None:
    login = await new_login(client)
    clock.advance(hours=2)
    assert (await client.post("/api/logout", headers=login.headers)).status_code == 204
    assert await stored_expiry(login.session_id) == clock.now + timedelta(days=1)


async def test_every_way_of_revoking_shortens_the_expiry(
    client: AsyncClient, clock: FakeClock
) -> None:
    user = await sign_up(client)
    here = await log_in_session(client, user["email"])
    there = await log_in_session(client, user["email"])
    stolen = await log_in_session(client, user["email"])
    await client.delete(f"/api/sessions/{there.session_id}", headers=here.headers)
    assert await stored_expiry(there.session_id) == clock.now + timedelta(days=1)
    # Reuse detection: the first token presented again after the grace window.
    await refresh(client, stolen.refresh_token)
    clock.advance(seconds=11)
    assert (await refresh(client, stolen.refresh_token)).status_code == 401
    assert await stored_expiry(stolen.session_id) == clock.now + timedelta(days=1)
    clock.advance(seconds=1)
    await client.post("/api/logout/all", headers=here.headers)
    assert await stored_expiry(here.session_id) == clock.now + timedelta(days=1)


async def test_revoking_never_extends_a_session(client: AsyncClient, clock: FakeClock) -> None:
    login = await new_login(client)
    ends = await stored_expiry(login.session_id)
    clock.advance(days=29, hours=12)
    await client.post("/api/logout", headers=login.headers)
    assert await stored_expiry(login.session_id) == ends


async def test_reuse_of_a_revoked_sessions_token_stays_401_until_it_is_removed(
    client: AsyncClient, clock: FakeClock
) -> None:
    login = await new_login(client)
    body = (await refresh(client, login.refresh_token)).json()
    await client.post("/api/logout", headers=login.headers)
    clock.advance(hours=23)
    for token in (login.refresh_token, body["refresh_token"]):
        assert (await refresh(client, token)).status_code == 401


# ---- refresh throttling per IP ----


@pytest.mark.parametrize("settings_overrides", [{"refresh_max_failures_per_ip": 3}])
async def test_failed_refreshes_from_one_ip_get_429(
    client: AsyncClient, running_app: ASGIApp, clock: FakeClock
) -> None:
    login = await new_login(client)
    for _ in range(3):
        assert (await refresh(client, f"{new_session_id()}.{'A' * 43}")).status_code == 401
    clock.advance(seconds=100)
    blocked = await refresh(client, login.refresh_token)
    assert blocked.status_code == 429
    assert blocked.headers["retry-after"] == "800"
    assert blocked.json() == {"detail": "Too many failed refreshes; try again later"}
    async with client_at(running_app, "198.51.100.7") as elsewhere:
        assert (await refresh(elsewhere, login.refresh_token)).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"refresh_max_failures_per_ip": 3}])
async def test_parallel_failed_refreshes_are_counted_before_they_are_tried(
    client: AsyncClient,
) -> None:
    login = await new_login(client)
    guesses = [f"{new_session_id()}.{'A' * 43}" for _ in range(10)]
    responses = await asyncio.gather(*(refresh(client, guess) for guess in guesses))
    assert sorted(r.status_code for r in responses) == [401] * 3 + [429] * 7
    assert (await refresh(client, login.refresh_token)).status_code == 429


@pytest.mark.parametrize("settings_overrides", [{"refresh_max_failures_per_ip": 2}])
async def test_successful_refreshes_do_not_use_the_ip_budget(client: AsyncClient) -> None:
    login = await new_login(client)
    current = login.refresh_token
    for _ in range(5):
        response = await refresh(client, current)
        assert response.status_code == 200
        current = response.json()["refresh_token"]
