"""Lists sync: GET /api/lists?updated_since= reports what changed for the caller, and the
lists they can no longer read, up to a watermark."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from beanie import PydanticObjectId
from httpx import AsyncClient

from service.config import Settings
from service.core.clock import utc_now
from service.core.pagination import encode_cursor, fingerprint
from service.db import MongoDatabase, ensure_setting_indexes
from service.lists import store
from service.lists.models import Membership, Role, TodoList
from tests.lists.conftest import Shared, add_member, get_list, make_list
from tests.utils import UserAccount


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Complete up to the present: what a test just did is in the answer.
    return {"sync_lag_ms": 0}


async def mark() -> str:
    """An instant after everything done so far, before anything done next."""
    await asyncio.sleep(0.003)
    instant = utc_now().isoformat()
    await asyncio.sleep(0.003)
    return instant


async def sync(client: AsyncClient, user: UserAccount, since: str, **params: Any) -> Any:
    response = await client.get(
        "/api/lists", params={"updated_since": since, **params}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def changed(client: AsyncClient, user: UserAccount, since: str) -> list[Any]:
    """The items of a complete sync answer (one page)."""
    body = await sync(client, user, since)
    assert body["next_cursor"] is None
    return list(body["items"])


def removed(list_id: str) -> dict[str, Any]:
    return {"id": list_id, "removed": True}


async def test_a_first_sync_reports_every_list(client: AsyncClient, shared: Shared) -> None:
    long_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    body = await sync(client, shared.editor, long_ago)
    assert set(body) == {"items", "next_cursor", "watermark"}
    assert [item["id"] for item in body["items"]] == [shared.editor.id, shared.id]
    assert body["items"][1] == await get_list(client, shared.editor, shared.id)
    assert body["watermark"] >= body["items"][1]["updated_at"]


async def test_nothing_changed_is_an_empty_answer(client: AsyncClient, shared: Shared) -> None:
    since = await mark()
    for role in ("owner", "editor", "viewer", "stranger"):
        assert await changed(client, shared.of(role), since) == []


async def test_a_rename_is_reported_to_every_member(client: AsyncClient, shared: Shared) -> None:
    since = await mark()
    await client.patch(shared.url, json={"name": "New"}, headers=shared.owner.headers)
    for role in ("owner", "editor", "viewer"):
        user = shared.of(role)
        assert await changed(client, user, since) == [await get_list(client, user, shared.id)]
    assert await changed(client, shared.stranger, since) == []


async def test_a_role_change_is_reported_with_the_new_role(
    client: AsyncClient, shared: Shared
) -> None:
    since = await mark()
    await client.patch(
        f"{shared.url}/members/{shared.viewer.id}",
        json={"role": "editor"},
        headers=shared.owner.headers,
    )
    [item] = await changed(client, shared.viewer, since)
    assert item["id"] == shared.id
    assert item["role"] == "editor"


async def test_a_removed_member_is_told_and_the_others_see_the_new_count(
    client: AsyncClient, shared: Shared
) -> None:
    since = await mark()
    await client.delete(f"{shared.url}/members/{shared.viewer.id}", headers=shared.owner.headers)
    assert await changed(client, shared.viewer, since) == [removed(shared.id)]
    [item] = await changed(client, shared.editor, since)
    assert item["member_count"] == 2


async def test_leaving_is_reported_as_removed(client: AsyncClient, shared: Shared) -> None:
    since = await mark()
    await client.delete(f"{shared.url}/members/{shared.editor.id}", headers=shared.editor.headers)
    assert await changed(client, shared.editor, since) == [removed(shared.id)]


async def test_a_deleted_list_is_removed_for_everyone_who_could_read_it(
    client: AsyncClient, shared: Shared
) -> None:
    since = await mark()
    await client.delete(shared.url, headers=shared.owner.headers)
    for role in ("owner", "editor", "viewer"):
        assert await changed(client, shared.of(role), since) == [removed(shared.id)], role
    assert await changed(client, shared.stranger, since) == []


async def test_a_list_deleted_while_memberships_were_still_live_is_removed(
    client: AsyncClient, shared: Shared
) -> None:
    since = await mark()
    # A deletion that stopped after the tombstone: the memberships were not ended yet.
    await store.tombstone_list(
        list_id=PydanticObjectId(shared.id),
        owner_id=PydanticObjectId(shared.owner.id),
        versions=None,
        now=utc_now(),
    )
    assert await changed(client, shared.viewer, since) == [removed(shared.id)]


async def test_a_member_added_again_gets_the_list_back(client: AsyncClient, shared: Shared) -> None:
    await client.delete(f"{shared.url}/members/{shared.viewer.id}", headers=shared.owner.headers)
    since = await mark()
    await add_member(shared.id, shared.viewer, Role.VIEWER)
    assert await changed(client, shared.viewer, since) == [
        await get_list(client, shared.viewer, shared.id)
    ]


async def test_removed_and_added_again_since_is_just_the_list(
    client: AsyncClient, shared: Shared
) -> None:
    since = await mark()
    await client.delete(f"{shared.url}/members/{shared.viewer.id}", headers=shared.owner.headers)
    await add_member(shared.id, shared.viewer, Role.EDITOR)
    [item] = await changed(client, shared.viewer, since)
    assert (item["id"], item["role"]) == (shared.id, "editor")


async def test_a_list_shared_with_me_is_reported(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    bobs = await make_list(client, bob)
    since = await mark()
    await add_member(bobs["id"], alice, Role.VIEWER)
    [item] = await changed(client, alice, since)
    assert (item["id"], item["role"], item["owner"]["id"]) == (bobs["id"], "viewer", bob.id)


async def test_a_new_list_and_a_transfer_are_reported(client: AsyncClient, shared: Shared) -> None:
    since = await mark()
    created = await make_list(client, shared.editor)
    await client.post(
        f"{shared.url}/transfer", json={"user_id": shared.editor.id}, headers=shared.owner.headers
    )
    items = await changed(client, shared.editor, since)
    assert [(item["id"], item["role"]) for item in items] == [
        (created["id"], "owner"),
        (shared.id, "owner"),
    ]
    [item] = await changed(client, shared.owner, since)
    assert (item["id"], item["role"]) == (shared.id, "editor")


async def test_other_lists_unchanged_are_not_reported(client: AsyncClient, shared: Shared) -> None:
    other = await make_list(client, shared.owner, "Other")
    await add_member(other["id"], shared.editor, Role.EDITOR)
    since = await mark()
    await client.patch(shared.url, json={"name": "New"}, headers=shared.owner.headers)
    assert [item["id"] for item in await changed(client, shared.editor, since)] == [shared.id]


async def test_changes_come_in_order_a_page_at_a_time_under_one_watermark(
    client: AsyncClient, alice: UserAccount
) -> None:
    since = await mark()
    created = [await make_list(client, alice, f"L{n}") for n in range(5)]
    await client.delete(f"/api/lists/{created[1]['id']}", headers=alice.headers)
    # Renamed last: it comes after the others.
    await client.patch(f"/api/lists/{created[0]['id']}", json={"name": "x"}, headers=alice.headers)
    first = await sync(client, alice, since, limit=2)
    assert first["next_cursor"] is not None
    items = list(first["items"])
    cursor = first["next_cursor"]
    later = await make_list(client, alice, "after the watermark")
    while cursor is not None:
        page = await sync(client, alice, since, limit=2, cursor=cursor)
        assert page["watermark"] == first["watermark"]
        items += page["items"]
        cursor = page["next_cursor"]
    expected = [c["id"] for c in created[2:]] + [created[1]["id"], created[0]["id"]]
    assert [item["id"] for item in items] == expected
    assert items[3] == removed(created[1]["id"])
    # What changed after the watermark is in the next answer.
    next_items = await changed(client, alice, first["watermark"])
    assert [item["id"] for item in next_items] == [later["id"]]


@pytest.mark.parametrize("settings_overrides", [{"sync_lag_ms": 60_000}])
async def test_the_watermark_lags_the_clock_by_sync_lag_ms(
    client: AsyncClient, alice: UserAccount
) -> None:
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    await make_list(client, alice)
    body = await sync(client, alice, since)
    # A change younger than the lag is not in the answer yet (an earlier write may still land).
    assert body["items"] == []
    assert datetime.fromisoformat(body["watermark"]) <= datetime.now(UTC) - timedelta(seconds=59)


async def test_a_since_older_than_the_tombstones_is_410(
    client: AsyncClient, alice: UserAccount
) -> None:
    since = (datetime.now(UTC) - timedelta(days=31)).isoformat()
    response = await client.get(
        "/api/lists", params={"updated_since": since}, headers=alice.headers
    )
    assert response.status_code == 410
    assert "full resync" in response.json()["detail"]


async def test_a_malformed_cursor_is_400_even_with_a_since_too_old(
    client: AsyncClient, alice: UserAccount
) -> None:
    since = (datetime.now(UTC) - timedelta(days=31)).isoformat()
    response = await client.get(
        "/api/lists",
        params={"updated_since": since, "cursor": "2.7e+16"},
        headers=alice.headers,
    )
    assert response.status_code == 400, response.text


async def test_a_cursor_of_another_query_is_400(client: AsyncClient, alice: UserAccount) -> None:
    since = await mark()
    for n in range(3):
        await make_list(client, alice, f"L{n}")
    cursor = (await sync(client, alice, since, limit=1))["next_cursor"]
    for params in [
        {"updated_since": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
        {},
    ]:
        response = await client.get(
            "/api/lists", params={**params, "cursor": cursor}, headers=alice.headers
        )
        assert response.status_code == 400, params
    listing = (await client.get("/api/lists", params={"limit": 1}, headers=alice.headers)).json()
    response = await client.get(
        "/api/lists",
        params={"updated_since": since, "cursor": listing["next_cursor"]},
        headers=alice.headers,
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("key", "extra"),
    [
        (["2026-01-01T00:00:00+00:00"], {"w": "2026-01-01T00:00:00+00:00"}),
        (["2026-01-01T00:00:00", "6b0f2329682a2707ca9cdb21"], {"w": "2026-01-01T00:00:00+00:00"}),
        (["2026-01-01T00:00:00+00:00", 7], {"w": "2026-01-01T00:00:00+00:00"}),
        (["2026-01-01T00:00:00+00:00", "nope"], {"w": "2026-01-01T00:00:00+00:00"}),
        (["2026-01-01T00:00:00+00:00", "6b0f2329682a2707ca9cdb21"], {}),
        (["2026-01-01T00:00:00+00:00", "6b0f2329682a2707ca9cdb21"], {"w": "soon"}),
    ],
)
async def test_a_sync_cursor_this_service_never_makes_is_400(
    client: AsyncClient, alice: UserAccount, key: list[Any], extra: dict[str, Any]
) -> None:
    since = await mark()
    query = fingerprint({"lists_of": alice.id, "updated_since": since})
    cursor = encode_cursor(key, query, extra)
    response = await client.get(
        "/api/lists", params={"updated_since": since, "cursor": cursor}, headers=alice.headers
    )
    assert (response.status_code, response.json()) == (400, {"detail": "Invalid cursor"})


@pytest.mark.mock_only
@pytest.mark.parametrize("since", ["yesterday", "2026-01-01T00:00:00", "1700000000", ""])
async def test_updated_since_is_a_datetime_with_an_offset(
    client: AsyncClient, alice: UserAccount, since: str
) -> None:
    response = await client.get(
        "/api/lists", params={"updated_since": since}, headers=alice.headers
    )
    assert response.status_code == 422


async def ttls() -> list[int]:
    """The expiry of the TTL indexes of ended memberships and deleted lists, in seconds."""
    memberships = await Membership.get_pymongo_collection().index_information()
    lists = await TodoList.get_pymongo_collection().index_information()
    return [
        memberships["memberships_tombstone_ttl"]["expireAfterSeconds"],
        lists["lists_tombstone_ttl"]["expireAfterSeconds"],
    ]


async def test_ended_memberships_and_deleted_lists_expire_with_the_retention(
    client: AsyncClient,
) -> None:
    assert await ttls() == [30 * 24 * 60 * 60] * 2


# mongomock has no collMod (and its index conflict has no code).
@pytest.mark.wire_only
async def test_a_changed_retention_retunes_the_ttl_indexes(
    client: AsyncClient, database: MongoDatabase, settings: Settings
) -> None:
    changed = settings.model_copy(update={"tombstone_retention_days": 2})
    await ensure_setting_indexes(database, changed)
    assert await ttls() == [2 * 24 * 60 * 60] * 2
