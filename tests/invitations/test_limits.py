"""MAX_PENDING_INVITATIONS per list (409) and MAX_INVITATIONS_PER_DAY per inviter (429),
each held under parallel requests."""

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from httpx import AsyncClient

from service.accounts import counters
from service.accounts.models import ThrottleCounter
from tests.invitations.conftest import answer, invite, invited, pending
from tests.utils import FakeClock, UserAccount, create_account

FULL = (
    "This list has 3 pending invitations, the most it may have; "
    "revoke some or wait for them to be answered."
)
DAY = 24 * 3600


def emails(count: int, prefix: str = "guest") -> list[str]:
    return [f"{prefix}{n}@example.com" for n in range(count)]


# ---- pending invitations per list ----


@pytest.mark.parametrize("settings_overrides", [{"max_pending_invitations": 3}])
async def test_pending_invitations_stop_at_the_limit_even_in_parallel(
    client: AsyncClient, alice: UserAccount
) -> None:
    responses = await asyncio.gather(*(invite(client, alice, alice.id, e) for e in emails(8)))
    assert Counter(response.status_code for response in responses) == {202: 3, 409: 5}
    assert {r.json()["detail"] for r in responses if r.status_code == 409} == {FULL}
    assert len(await pending(client, alice, alice.id)) == 3


@pytest.mark.parametrize("settings_overrides", [{"max_pending_invitations": 1}])
async def test_inviting_again_takes_no_other_pending_slot(
    client: AsyncClient, alice: UserAccount
) -> None:
    first, second = emails(2)
    await invited(client, alice, alice.id, first)
    await invited(client, alice, alice.id, first, "editor")
    assert (await invite(client, alice, alice.id, second)).status_code == 409


@pytest.mark.parametrize("settings_overrides", [{"max_pending_invitations": 1}])
async def test_the_limit_is_per_list(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    await invited(client, alice, alice.id, "guest@example.com")
    await invited(client, bob, bob.id, "guest@example.com")


@pytest.mark.parametrize("settings_overrides", [{"max_pending_invitations": 1}])
async def test_an_expired_invitation_frees_its_slot(
    client: AsyncClient, alice: UserAccount, clock: FakeClock
) -> None:
    first, second = emails(2)
    await invited(client, alice, alice.id, first)
    clock.advance(days=7)
    await invited(client, alice, alice.id, second)
    assert [sent["email"] for sent in await pending(client, alice, alice.id)] == [second]


@pytest.mark.parametrize("settings_overrides", [{"max_pending_invitations": 1}])
@pytest.mark.parametrize("how", ["accept", "decline", "revoke"])
async def test_an_answered_or_revoked_invitation_frees_its_slot(
    client: AsyncClient, alice: UserAccount, bob: UserAccount, how: str
) -> None:
    sent = await invited(client, alice, alice.id, bob.email)
    if how == "revoke":
        response = await client.delete(
            f"/api/lists/{alice.id}/invitations/{sent['id']}", headers=alice.headers
        )
        assert response.status_code == 204
    else:
        assert (await answer(client, bob, sent["id"], how)).is_success
    await invited(client, alice, alice.id, "next@example.com")


@pytest.mark.parametrize(
    "settings_overrides", [{"max_pending_invitations": 1, "max_list_members": 1 + 1}]
)
async def test_a_failed_accept_keeps_the_slot(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    carol = await create_account(client)
    await invited(client, alice, alice.id, carol.email)
    joined = await answer(client, carol, (await pending(client, alice, alice.id))[0]["id"])
    assert joined.status_code == 200
    sent = await invited(client, alice, alice.id, bob.email)
    assert (await answer(client, bob, sent["id"])).status_code == 409  # full list
    # Still pending, so still holding the list's one slot.
    assert (await invite(client, alice, alice.id, "next@example.com")).status_code == 409


# ---- invitations sent per day ----


@pytest.mark.parametrize("settings_overrides", [{"max_invitations_per_day": 3}])
async def test_invitations_per_day_stop_at_the_limit_even_in_parallel(
    client: AsyncClient, alice: UserAccount
) -> None:
    responses = await asyncio.gather(*(invite(client, alice, alice.id, e) for e in emails(7)))
    assert Counter(response.status_code for response in responses) == {202: 3, 429: 4}
    for response in responses:
        if response.status_code == 429:
            assert response.headers["retry-after"] == str(DAY)
            assert response.json() == {
                "detail": "Too many invitations sent in the last 24 hours; try again later"
            }
    assert len(await pending(client, alice, alice.id)) == 3


@pytest.mark.parametrize("settings_overrides", [{"max_invitations_per_day": 2}])
async def test_invitations_sent_again_count_too(client: AsyncClient, alice: UserAccount) -> None:
    await invited(client, alice, alice.id, "guest@example.com")
    await invited(client, alice, alice.id, "guest@example.com", "editor")
    assert (await invite(client, alice, alice.id, "guest@example.com")).status_code == 429


@pytest.mark.parametrize("settings_overrides", [{"max_invitations_per_day": 2}])
async def test_the_day_is_any_24_hours(
    client: AsyncClient, alice: UserAccount, clock: FakeClock
) -> None:
    first, second, third, fourth = emails(4)
    await invited(client, alice, alice.id, first)
    clock.advance(hours=20)
    await invited(client, alice, alice.id, second)
    refused = await invite(client, alice, alice.id, third)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == str(4 * 3600)  # when the first leaves the 24 h
    clock.advance(hours=4)
    await invited(client, alice, alice.id, third)
    # The second is still within the last 24 hours: a window from the first wouldn't know.
    refused = await invite(client, alice, alice.id, fourth)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == str(20 * 3600)


@pytest.mark.parametrize("settings_overrides", [{"max_invitations_per_day": 1}])
async def test_the_daily_limit_is_per_inviter(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    await invited(client, alice, alice.id, "guest@example.com")
    assert (await invite(client, alice, alice.id, "other@example.com")).status_code == 429
    await invited(client, bob, bob.id, "guest@example.com")


@pytest.mark.parametrize("settings_overrides", [{"max_invitations_per_day": 1}])
async def test_members_who_may_not_invite_are_not_counted(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    # A stranger's refused call (404) counts nothing against their own budget.
    assert (await invite(client, bob, alice.id, "guest@example.com")).status_code == 404
    await invited(client, bob, bob.id, "guest@example.com")


async def test_the_rolling_counter_keeps_at_most_the_limit_of_instants(
    client: AsyncClient, clock: FakeClock
) -> None:
    window = timedelta(hours=1)
    taken = await asyncio.gather(
        *(
            counters.reserve_rolling(kind="k", subject="s", now=clock.now, window=window, limit=4)
            for _ in range(10)
        )
    )
    assert sum(isinstance(t, counters.Reserved) for t in taken) == 4
    assert {t.count.retry_after(clock.now) for t in taken if isinstance(t, counters.Full)} == {3600}
    stored = await ThrottleCounter.get(counters.counter_key("k", "s"))
    assert stored is not None
    assert len(stored.sent) == 4
    assert stored.expires_at == clock.now + window  # for the TTL index
    clock.advance(hours=1)
    after = await counters.reserve_rolling(
        kind="k", subject="s", now=clock.now, window=window, limit=4
    )
    assert isinstance(after, counters.Reserved)
    stored = await ThrottleCounter.get(counters.counter_key("k", "s"))
    assert stored is not None
    assert stored.sent == [clock.now]
