"""POST /api/todos with an Idempotency-Key: replay, mismatch, per user, expiry, concurrency."""

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from httpx import AsyncClient, Response

from service.core.clock import utc_now
from service.lists.models import TodoList
from service.todos.idempotency import request_hash
from service.todos.models import IdempotencyKey, Todo
from tests.utils import UserAccount, create_list, share_list


async def post(
    client: AsyncClient, user: UserAccount, body: dict[str, Any], key: str | None = "key-1"
) -> Response:
    headers = {**user.headers, **({"Idempotency-Key": key} if key is not None else {})}
    return await client.post("/api/todos", json=body, headers=headers)


async def count(user: UserAccount) -> int:
    """How many todos `user` created."""
    return await Todo.find({"created_by": ObjectId(user.id)}).count()


def assert_replays(first: Response, retry: Response) -> None:
    """`retry` is the answer to `first`, replayed: the same status, body and headers."""
    assert retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["location"] == first.headers["location"]
    assert retry.headers["etag"] == first.headers["etag"]
    assert retry.headers["idempotent-replayed"] == "true"


async def test_a_retry_replays_the_first_answer(client: AsyncClient, alice: UserAccount) -> None:
    first = await post(client, alice, {"text": "pay rent", "tags": ["home"]})
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    retry = await post(client, alice, {"text": "pay rent", "tags": ["home"]})
    assert_replays(first, retry)
    assert await count(alice) == 1
    read = await client.get(first.headers["location"], headers=alice.headers)
    assert read.json() == first.json()


async def test_the_replay_is_the_original_answer_even_after_a_change(
    client: AsyncClient, alice: UserAccount
) -> None:
    first = await post(client, alice, {"text": "x"})
    await client.patch(first.headers["location"], json={"notes": "later"}, headers=alice.headers)
    retry = await post(client, alice, {"text": "x"})
    assert retry.json() == first.json()


async def test_bodies_are_compared_after_normalisation(
    client: AsyncClient, alice: UserAccount
) -> None:
    first = await post(client, alice, {"text": "x", "tags": ["Home"]})
    retry = await post(client, alice, {"text": "  x ", "tags": ["home", "HOME"], "priority": 0})
    assert retry.status_code == 201
    assert retry.json() == first.json()
    assert await count(alice) == 1


async def test_the_same_key_with_another_body_is_422(
    client: AsyncClient, alice: UserAccount
) -> None:
    await post(client, alice, {"text": "x"})
    response = await post(client, alice, {"text": "y"})
    assert response.status_code == 422
    assert "different request body" in response.json()["detail"]
    assert await count(alice) == 1


async def test_keys_are_per_user(client: AsyncClient, alice: UserAccount, bob: UserAccount) -> None:
    mine = await post(client, alice, {"text": "x"})
    theirs = await post(client, bob, {"text": "something else"})
    assert theirs.status_code == 201
    assert theirs.json()["id"] != mine.json()["id"]
    assert (await count(alice), await count(bob)) == (1, 1)


async def test_other_keys_and_no_key_create_again(client: AsyncClient, alice: UserAccount) -> None:
    await post(client, alice, {"text": "x"}, key="a")
    await post(client, alice, {"text": "x"}, key="b")
    await post(client, alice, {"text": "x"}, key=None)
    await post(client, alice, {"text": "x"}, key=None)
    assert await count(alice) == 4


async def test_a_key_older_than_24_hours_is_unused_even_before_the_ttl_sweep(
    client: AsyncClient, alice: UserAccount
) -> None:
    first = await post(client, alice, {"text": "x"})
    await IdempotencyKey.get_pymongo_collection().update_many(
        {}, {"$set": {"created_at": utc_now() - timedelta(hours=24, seconds=1)}}
    )
    again = await post(client, alice, {"text": "another body is fine now"})
    assert again.status_code == 201
    assert again.json()["id"] != first.json()["id"]
    assert await count(alice) == 2


async def test_keys_expire_through_a_ttl_index(client: AsyncClient, alice: UserAccount) -> None:
    await post(client, alice, {"text": "x"})
    indexes = await IdempotencyKey.get_pymongo_collection().index_information()
    assert indexes["idempotency_ttl"]["expireAfterSeconds"] == 24 * 60 * 60


async def test_parallel_requests_with_one_key_create_exactly_one_todo(
    client: AsyncClient, alice: UserAccount
) -> None:
    responses = await asyncio.gather(*(post(client, alice, {"text": "once"}) for _ in range(10)))
    assert {response.status_code for response in responses} == {201}
    assert len({response.json()["id"] for response in responses}) == 1
    assert await count(alice) == 1


@pytest.mark.parametrize("key", ["", "k" * 256])
@pytest.mark.mock_only
async def test_a_key_of_bad_length_is_422(
    client: AsyncClient, alice: UserAccount, key: str
) -> None:
    response = await post(client, alice, {"text": "x"}, key=key)
    assert response.status_code == 422
    assert await count(alice) == 0


async def test_a_255_character_key_is_fine(client: AsyncClient, alice: UserAccount) -> None:
    assert (await post(client, alice, {"text": "x"}, key="k" * 255)).status_code == 201


async def test_an_invalid_body_with_a_key_claims_nothing(
    client: AsyncClient, alice: UserAccount
) -> None:
    assert (await post(client, alice, {"text": ""})).status_code == 422
    assert (await post(client, alice, {"text": "fine"})).status_code == 201


async def test_a_claim_abandoned_by_a_dead_request_is_taken_over(
    client: AsyncClient, alice: UserAccount
) -> None:
    todo_id = ObjectId()
    fields = {"text": "x", "notes": "", "completed": False, "due": None, "priority": 0, "tags": []}
    await IdempotencyKey(
        owner_id=ObjectId(alice.id),
        key="key-1",
        request_hash=request_hash(fields),
        todo_id=todo_id,
        created_at=utc_now() - timedelta(minutes=2),
    ).insert()
    response = await post(client, alice, {"text": "x"})
    assert response.status_code == 201
    assert response.json()["id"] == str(todo_id)
    replay = await post(client, alice, {"text": "x"})
    assert replay.json() == response.json()
    assert await count(alice) == 1


async def test_a_record_stored_with_its_status_and_location_still_replays(
    client: AsyncClient, alice: UserAccount
) -> None:
    """Records written before status_code and location were derived hold both: a retry
    replays them as ever."""
    first = await post(client, alice, {"text": "x"})
    await IdempotencyKey.get_pymongo_collection().update_many(
        {}, {"$set": {"status_code": 201, "location": first.headers["location"]}}
    )
    assert_replays(first, await post(client, alice, {"text": "x"}))
    assert await count(alice) == 1


async def test_a_record_holds_the_answer_but_not_what_follows_from_it(
    client: AsyncClient, alice: UserAccount
) -> None:
    first = await post(client, alice, {"text": "x"})
    record = await IdempotencyKey.get_pymongo_collection().find_one({})
    assert record is not None
    assert record["response_body"] == first.json()
    assert "status_code" not in record
    assert "location" not in record


# ---- keys and lists ----


async def test_a_key_names_the_list_it_created_in(client: AsyncClient, alice: UserAccount) -> None:
    errands = await create_list(client, alice, "Errands")
    first = await post(client, alice, {"text": "x", "list_id": errands["id"]})
    assert first.json()["list_id"] == errands["id"]
    assert_replays(first, await post(client, alice, {"text": "x", "list_id": errands["id"]}))
    # The same key for another list is another body.
    other = await post(client, alice, {"text": "x", "list_id": alice.id})
    assert other.status_code == 422
    assert await count(alice) == 1
    # One slot taken, by the one todo created.
    stored = await TodoList.get(ObjectId(errands["id"]))
    assert stored is not None
    assert stored.todo_count == 1


async def test_a_key_sent_without_a_list_is_not_the_default_list_named(
    client: AsyncClient, alice: UserAccount
) -> None:
    """The body as sent decides: naming the default list is another body than leaving it out
    (both create in the same list)."""
    first = await post(client, alice, {"text": "x"})
    assert first.json()["list_id"] == alice.id
    assert_replays(first, await post(client, alice, {"text": "x"}))
    assert (await post(client, alice, {"text": "x", "list_id": alice.id})).status_code == 422


async def test_keys_are_per_user_in_a_shared_list(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    shared = await create_list(client, alice)
    await share_list(client, alice, shared["id"], bob, "editor")
    body = {"text": "x", "list_id": shared["id"]}
    mine, theirs = await post(client, alice, body), await post(client, bob, body)
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.json()["created_by"] == bob.id


async def test_a_refused_create_claims_no_key(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    shared = await create_list(client, alice)
    await share_list(client, alice, shared["id"], bob, "viewer")
    refused = await post(client, bob, {"text": "x", "list_id": shared["id"]})
    assert refused.status_code == 403
    assert await IdempotencyKey.count() == 0
    # The key is still free for the request the viewer may make.
    assert (await post(client, bob, {"text": "x", "list_id": shared["id"]})).status_code == 403
    assert (await post(client, bob, {"text": "x"})).status_code == 201
