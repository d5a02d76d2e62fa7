"""What other features call: deleting a list's todos, and a user's idempotency records."""

from beanie import PydanticObjectId
from httpx import AsyncClient

from service.todos import service
from service.todos.models import IdempotencyKey, Todo
from tests.todos.conftest import todo_count
from tests.utils import UserAccount, create_list, create_todo


async def test_delete_todos_in_list_tombstones_every_live_todo_of_that_list_only(
    client: AsyncClient, alice: UserAccount
) -> None:
    doomed = await create_list(client, alice, "Doomed")
    todos = [await create_todo(client, alice, f"t{i}", list_id=doomed["id"]) for i in range(3)]
    await client.delete(f"/api/todos/{todos[0]['id']}", headers=alice.headers)
    kept = await create_todo(client, alice, "in the inbox")
    deleted = await service.delete_todos_in_list(list_id=PydanticObjectId(doomed["id"]))
    assert deleted == 2
    stored = (
        await Todo.get_pymongo_collection()
        .find({"list_id": PydanticObjectId(doomed["id"])})
        .to_list(None)
    )
    assert all(document["deleted_at"] is not None for document in stored)
    assert all("text" not in document for document in stored)
    # The tombstones keep what sync and the feed report: the list, the creator.
    assert {document["created_by"] for document in stored} == {PydanticObjectId(alice.id)}
    read = await client.get(f"/api/todos/{kept['id']}", headers=alice.headers)
    assert read.status_code == 200
    # The list is going: its slots are not given back.
    assert await todo_count(doomed["id"]) == 2
    assert await service.delete_todos_in_list(list_id=PydanticObjectId(doomed["id"])) == 0


async def test_delete_idempotency_keys_of_deletes_that_users_records_only(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    for user in (alice, bob):
        response = await client.post(
            "/api/todos", json={"text": "x"}, headers={**user.headers, "Idempotency-Key": "k"}
        )
        assert response.status_code == 201
    await service.delete_idempotency_keys_of(user_id=PydanticObjectId(alice.id))
    owners = {record.owner_id async for record in IdempotencyKey.find_all()}
    assert owners == {PydanticObjectId(bob.id)}
