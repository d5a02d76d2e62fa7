"""Lists' database calls: each within the request's budget, and how many a request makes."""

import inspect
from datetime import UTC, datetime, timedelta

import pytest

from service.core.budget import BUDGET_MARKER
from service.lists import listing, service, store
from service.lists.models import Role
from tests.lists.conftest import add_member, make_list
from tests.test_round_trips import AUTH, Recorded
from tests.test_round_trips import recorded as recorded  # the fixture
from tests.utils import create_account


def test_every_store_function_declares_its_budget() -> None:
    for module in (store, service, listing):
        for name, function in inspect.getmembers(module, inspect.iscoroutinefunction):
            if name.startswith("_") or function.__module__ != module.__name__:
                continue
            assert hasattr(function, BUDGET_MARKER), f"{module.__name__}.{name}"


# The caller's memberships come with their session (AUTH): a list read is one more round trip,
# the list with its owner's names in one aggregate ($lookup of users by _id).
LIST_READ = ("aggregate", "lists")


@pytest.mark.wire_only
async def test_reading_a_list_makes_two_round_trips(recorded: Recorded) -> None:
    user = await create_account(recorded.client)
    created = await make_list(recorded.client, user)
    url = f"/api/lists/{created['id']}"
    assert await recorded.commands_of("GET", url, headers=user.headers) == [AUTH, LIST_READ]


@pytest.mark.wire_only
async def test_listing_and_syncing_lists_make_two_round_trips(recorded: Recorded) -> None:
    user, other = await create_account(recorded.client), await create_account(recorded.client)
    for n in range(3):
        created = await make_list(recorded.client, other, f"L{n}")
        await add_member(created["id"], user, Role.VIEWER)
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    for params in [{"limit": "2"}, {"updated_since": an_hour_ago}]:
        commands = await recorded.commands_of(
            "GET", "/api/lists", params=params, headers=user.headers
        )
        assert commands == [AUTH, LIST_READ], params
