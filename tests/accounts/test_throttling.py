"""Login and signup throttling, and which client address they count against."""

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest
from httpx import AsyncClient, Response
from starlette.types import ASGIApp

from service.accounts import counters, passwords
from service.accounts.counters import counter_key
from service.accounts.models import ThrottleCounter
from service.accounts.passwords import PasswordHasher
from service.accounts.throttling import LOGIN_EMAIL, LOGIN_IP, LoginThrottle
from service.config import Settings
from tests.utils import (
    DEFAULT_PASSWORD,
    FakeClock,
    Gate,
    client_at,
    create_account,
    new_email,
    sign_up,
)

WRONG = "wrong password"


async def login(
    client: AsyncClient, email: str, password: str, headers: dict[str, str] | None = None
) -> Response:
    return await client.post(
        "/api/token", data={"username": email, "password": password}, headers=headers
    )


async def fail_logins(client: AsyncClient, email: str, times: int) -> None:
    for _ in range(times):
        assert (await login(client, email, WRONG)).status_code == 401


async def fail_logins_with(client: AsyncClient, headers: dict[str, str], times: int) -> None:
    for _ in range(times):
        assert (await login(client, new_email(), WRONG, headers=headers)).status_code == 401


def bearer(token: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token['access_token']}"}


def signup_body() -> dict[str, Any]:
    return {"email": new_email(), "fname": "A", "lname": "B", "password": DEFAULT_PASSWORD}


# ---- per email ----


async def test_five_failures_block_the_email_even_with_the_right_password(
    client: AsyncClient,
) -> None:
    user = await sign_up(client)
    await fail_logins(client, user["email"], 5)
    response = await login(client, user["email"], DEFAULT_PASSWORD)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "900"
    assert response.json() == {"detail": "Too many failed logins; try again later"}


async def test_four_failures_do_not_block(client: AsyncClient) -> None:
    user = await sign_up(client)
    await fail_logins(client, user["email"], 4)
    assert (await login(client, user["email"], DEFAULT_PASSWORD)).status_code == 200


async def test_retry_after_counts_down_with_the_window(
    client: AsyncClient, clock: FakeClock
) -> None:
    user = await sign_up(client)
    await fail_logins(client, user["email"], 5)
    clock.advance(seconds=100.5)
    response = await login(client, user["email"], DEFAULT_PASSWORD)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "800"


async def test_block_lifts_when_the_window_has_passed(
    client: AsyncClient, clock: FakeClock
) -> None:
    user = await sign_up(client)
    await fail_logins(client, user["email"], 5)
    clock.advance(seconds=899)
    assert (await login(client, user["email"], DEFAULT_PASSWORD)).status_code == 429
    clock.advance(seconds=1)
    # The counter is still stored (no TTL sweep yet): its expiry is checked on read.
    assert await ThrottleCounter.count() > 0
    assert (await login(client, user["email"], DEFAULT_PASSWORD)).status_code == 200


async def test_the_window_starts_at_the_first_failure(
    client: AsyncClient, clock: FakeClock
) -> None:
    user = await sign_up(client)
    await fail_logins(client, user["email"], 4)
    clock.advance(seconds=900)
    # A new window: these four don't add to the old ones.
    await fail_logins(client, user["email"], 4)
    assert (await login(client, user["email"], DEFAULT_PASSWORD)).status_code == 200


async def test_success_clears_the_email_count(client: AsyncClient) -> None:
    user = await sign_up(client)
    await fail_logins(client, user["email"], 4)
    assert (await login(client, user["email"], DEFAULT_PASSWORD)).status_code == 200
    await fail_logins(client, user["email"], 4)
    assert (await login(client, user["email"], DEFAULT_PASSWORD)).status_code == 200


async def test_unknown_emails_are_throttled_alike(client: AsyncClient) -> None:
    await fail_logins(client, "ghost@example.com", 5)
    response = await login(client, "GHOST@example.com ", WRONG)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "900"


async def test_throttling_one_email_leaves_others_alone(client: AsyncClient) -> None:
    blocked = await sign_up(client)
    other = await sign_up(client)
    await fail_logins(client, blocked["email"], 5)
    assert (await login(client, other["email"], DEFAULT_PASSWORD)).status_code == 200


async def test_emails_are_not_stored_in_clear(client: AsyncClient) -> None:
    await fail_logins(client, "secret.person@example.com", 1)
    stored = [counter.model_dump_json() for counter in await ThrottleCounter.find_all().to_list()]
    assert stored
    assert not any("secret.person" in text for text in stored)


async def test_wrong_current_password_counts_as_a_failed_login(client: AsyncClient) -> None:
    account = await create_account(client)
    for _ in range(5):
        response = await client.request(
            "DELETE", "/api/me", json={"password": WRONG}, headers=account.headers
        )
        assert response.status_code == 400
    response = await client.request(
        "DELETE", "/api/me", json={"password": DEFAULT_PASSWORD}, headers=account.headers
    )
    assert response.status_code == 429
    assert (await login(client, account.email, DEFAULT_PASSWORD)).status_code == 429


# ---- parallel guesses: counted before the password is checked ----


class CountedVerify:
    """service.passwords.verify_password, counting its calls (they run in worker threads)."""

    def __init__(self) -> None:
        self._verify = passwords.verify_password
        self._lock = threading.Lock()
        self.calls = 0

    def __call__(self, password: str, hashed: str) -> tuple[bool, str | None]:
        with self._lock:
            self.calls += 1
        return self._verify(password, hashed)


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> CountedVerify:
    counted = CountedVerify()
    monkeypatch.setattr(passwords, "verify_password", counted)
    return counted


async def test_parallel_wrong_logins_for_one_email_verify_at_most_the_limit(
    client: AsyncClient, verifications: CountedVerify
) -> None:
    user = await sign_up(client)
    verifications.calls = 0
    responses = await asyncio.gather(*(login(client, user["email"], WRONG) for _ in range(12)))
    assert verifications.calls == 5
    assert sorted(r.status_code for r in responses) == [401] * 5 + [429] * 7
    assert (await login(client, user["email"], DEFAULT_PASSWORD)).status_code == 429
    assert verifications.calls == 5


@pytest.mark.parametrize("settings_overrides", [{"login_max_failures_per_ip": 3}])
async def test_parallel_wrong_logins_from_one_ip_verify_at_most_the_limit(
    client: AsyncClient, verifications: CountedVerify
) -> None:
    user = await sign_up(client)
    verifications.calls = 0
    responses = await asyncio.gather(*(login(client, new_email(), WRONG) for _ in range(8)))
    assert verifications.calls == 3
    assert sorted(r.status_code for r in responses) == [401] * 3 + [429] * 5
    assert (await login(client, user["email"], DEFAULT_PASSWORD)).status_code == 429


async def test_parallel_wrong_current_passwords_verify_at_most_the_limit(
    client: AsyncClient, verifications: CountedVerify
) -> None:
    account = await create_account(client)
    verifications.calls = 0

    async def change_password(current: str) -> Response:
        return await client.put(
            "/api/me/password",
            json={"current_password": current, "new_password": "a brand new password"},
            headers=account.headers,
        )

    responses = await asyncio.gather(*(change_password(WRONG) for _ in range(10)))
    assert verifications.calls == 5
    assert sorted(r.status_code for r in responses) == [400] * 5 + [429] * 5
    assert (await change_password(DEFAULT_PASSWORD)).status_code == 429
    assert verifications.calls == 5
    # The password is unchanged (a change would have ended this session).
    assert (await client.get("/api/me", headers=account.headers)).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"login_max_failures_per_ip": 3}])
async def test_successful_logins_do_not_use_the_ip_budget(client: AsyncClient) -> None:
    user = await sign_up(client)
    for _ in range(5):
        assert (await login(client, user["email"], DEFAULT_PASSWORD)).status_code == 200
    await fail_logins(client, new_email(), 2)
    assert (await login(client, user["email"], DEFAULT_PASSWORD)).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"login_max_failures_per_ip": 2}])
async def test_a_right_current_password_uses_no_budget(client: AsyncClient) -> None:
    account = await create_account(client)
    for _ in range(4):
        response = await client.patch(
            "/api/me",
            json={"email": new_email(), "current_password": DEFAULT_PASSWORD},
            headers=account.headers,
        )
        assert response.status_code == 200
    response = await client.request(
        "DELETE", "/api/me", json={"password": DEFAULT_PASSWORD}, headers=account.headers
    )
    assert response.status_code == 204


# ---- the password hashing queue ----


@pytest.mark.parametrize(
    "settings_overrides",
    [{"password_hash_concurrency": 1, "password_hash_queue": 0, "login_max_failures": 1}],
)
async def test_a_login_finding_the_hash_queue_full_is_503_before_anything_is_counted(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = await sign_up(client), await sign_up(client)
    gate = Gate(passwords.verify_password)
    monkeypatch.setattr(passwords, "verify_password", gate)
    try:
        holding = asyncio.ensure_future(login(client, first["email"], DEFAULT_PASSWORD))
        await gate.entered()
        refused = await login(client, second["email"], DEFAULT_PASSWORD)
        assert refused.status_code == 503
        # Refused before anything was counted for it.
        assert await ThrottleCounter.get(counter_key(LOGIN_EMAIL, second["email"])) is None
        assert refused.headers["retry-after"] == "1"
        assert refused.json() == {"detail": "Too many password checks at once; try again shortly"}
    finally:
        gate.open()
    assert (await holding).status_code == 200
    # The refused attempt used none of the email's one-failure budget.
    assert (await login(client, second["email"], DEFAULT_PASSWORD)).status_code == 200


class FailingHasher(PasswordHasher):
    """A hasher whose verification fails (a worker thread error, say)."""

    async def verify(self, password: str, hashed: str | None) -> tuple[bool, str | None]:
        raise RuntimeError("no thread")


async def test_a_check_that_fails_gives_its_slots_back(
    client: AsyncClient, settings: Settings, clock: FakeClock
) -> None:
    email, ip = "a@example.com", "192.0.2.1"
    throttle = LoginThrottle(settings=settings, email=email, ip=ip, now=clock.now)
    with pytest.raises(RuntimeError):
        await throttle.verify(FailingHasher(1, queue=0), WRONG, None, login=True)
    for kind, subject in ((LOGIN_EMAIL, email), (LOGIN_IP, ip)):
        stored = await ThrottleCounter.get(counter_key(kind, subject))
        assert stored is not None
        assert stored.hits == 0


def test_default_hash_queue_is_16() -> None:
    assert Settings.model_fields["password_hash_queue"].default == 16


# ---- per IP ----


@pytest.mark.parametrize("settings_overrides", [{"login_max_failures_per_ip": 3}])
async def test_failures_from_one_ip_block_that_ip_only(
    client: AsyncClient, running_app: ASGIApp
) -> None:
    user = await sign_up(client)
    for _ in range(3):
        await fail_logins(client, new_email(), 1)
    response = await login(client, user["email"], DEFAULT_PASSWORD)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "900"
    async with client_at(running_app, "198.51.100.7") as elsewhere:
        assert (await login(elsewhere, user["email"], DEFAULT_PASSWORD)).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"login_max_failures_per_ip": 3}])
async def test_success_does_not_clear_the_ip_count(client: AsyncClient) -> None:
    user = await sign_up(client)
    await fail_logins(client, new_email(), 2)
    assert (await login(client, user["email"], DEFAULT_PASSWORD)).status_code == 200
    await fail_logins(client, new_email(), 1)
    assert (await login(client, user["email"], DEFAULT_PASSWORD)).status_code == 429


# ---- signup per IP ----


@pytest.mark.parametrize("settings_overrides", [{"signup_max_per_ip": 2}])
async def test_signups_are_limited_per_ip(
    client: AsyncClient, running_app: ASGIApp, clock: FakeClock
) -> None:
    for _ in range(2):
        assert (await client.post("/api/users", json=signup_body())).status_code == 201
    clock.advance(seconds=600)
    response = await client.post("/api/users", json=signup_body())
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3000"
    async with client_at(running_app, "2001:db8::5") as elsewhere:
        assert (await elsewhere.post("/api/users", json=signup_body())).status_code == 201
    clock.advance(seconds=3000)
    assert (await client.post("/api/users", json=signup_body())).status_code == 201


def test_default_signup_limit_is_20_per_hour() -> None:
    fields = Settings.model_fields
    assert fields["refresh_max_failures_per_ip"].default == 50
    assert fields["signup_max_per_ip"].default == 20
    assert fields["signup_window_seconds"].default == 3600
    assert fields["login_max_failures"].default == 5
    assert fields["login_max_failures_per_ip"].default == 50
    assert fields["login_window_seconds"].default == 900


# ---- which address counts: X-Forwarded-For only behind a trusted proxy ----


@pytest.mark.parametrize("settings_overrides", [{"login_max_failures_per_ip": 2}])
async def test_forwarded_for_from_an_untrusted_peer_is_ignored(client: AsyncClient) -> None:
    # Without TRUSTED_PROXIES, a client can't dodge the IP limit by inventing addresses
    # (not even from 127.0.0.1, which uvicorn would trust by default).
    for fake in ("203.0.113.1", "203.0.113.2"):
        response = await login(client, new_email(), WRONG, headers={"X-Forwarded-For": fake})
        assert response.status_code == 401
    user = await sign_up(client)
    response = await login(
        client, user["email"], DEFAULT_PASSWORD, headers={"X-Forwarded-For": "203.0.113.3"}
    )
    assert response.status_code == 429


@pytest.mark.parametrize(
    "settings_overrides",
    [{"login_max_failures_per_ip": 2, "trusted_proxies": "127.0.0.1, 10.0.0.0/8"}],
)
async def test_forwarded_for_from_a_trusted_proxy_names_the_client(
    client: AsyncClient,
) -> None:
    behind = {"X-Forwarded-For": "198.51.100.20, 10.1.2.3"}
    await fail_logins_with(client, behind, 2)
    user = await sign_up(client)
    blocked = await login(client, user["email"], DEFAULT_PASSWORD, headers=behind)
    assert blocked.status_code == 429
    # Another client behind the same proxies has its own count.
    other = {"X-Forwarded-For": "198.51.100.21, 10.1.2.3"}
    allowed = await login(client, user["email"], DEFAULT_PASSWORD, headers=other)
    assert allowed.status_code == 200
    session = (await client.get("/api/sessions", headers=bearer(allowed.json()))).json()[0]
    assert session["ip"] == "198.51.100.21"


# ---- the counters themselves ----


async def test_concurrent_hits_are_all_counted(client: AsyncClient, clock: FakeClock) -> None:
    # Ten requests racing to open the same window: one opens it, the others count in it.
    window = timedelta(seconds=60)
    await asyncio.gather(
        *(counters.hit(kind="k", subject="s", now=clock.now, window=window) for _ in range(10))
    )
    stored = await ThrottleCounter.get(counter_key("k", "s"))
    assert stored is not None
    assert stored.hits == 10


async def test_a_hit_after_the_window_opens_a_new_one(
    client: AsyncClient, clock: FakeClock
) -> None:
    window = timedelta(seconds=60)
    for _ in range(3):
        await counters.hit(kind="k", subject="s", now=clock.now, window=window)
    clock.advance(seconds=60)
    count = await counters.hit(kind="k", subject="s", now=clock.now, window=window)
    assert count.hits == 1
    assert count.retry_after(clock.now) == 60


async def test_reserving_stops_at_the_limit_even_in_parallel(
    client: AsyncClient, clock: FakeClock
) -> None:
    window = timedelta(seconds=60)
    taken = await asyncio.gather(
        *(
            counters.reserve(kind="k", subject="s", now=clock.now, window=window, limit=4)
            for _ in range(10)
        )
    )
    assert sum(isinstance(t, counters.Reserved) for t in taken) == 4
    full = [t for t in taken if isinstance(t, counters.Full)]
    assert len(full) == 6
    assert {f.count.retry_after(clock.now) for f in full} == {60}
    stored = await ThrottleCounter.get(counter_key("k", "s"))
    assert stored is not None
    assert stored.hits == 4


async def test_a_released_slot_can_be_reserved_again(client: AsyncClient, clock: FakeClock) -> None:
    window = timedelta(seconds=60)

    async def reserve() -> counters.Reserved | counters.Full:
        return await counters.reserve(kind="k", subject="s", now=clock.now, window=window, limit=1)

    slot = await reserve()
    assert isinstance(slot, counters.Reserved)
    assert isinstance(await reserve(), counters.Full)
    await counters.release(reserved=slot, now=clock.now)
    assert isinstance(await reserve(), counters.Reserved)
    clock.advance(seconds=60)
    assert isinstance(await reserve(), counters.Reserved)
