"""Who may do what, across features: four users (the owner of a shared list, an editor, a
viewer, and a stranger to it) x every list, member, invitation and todo route that names the
list or something in it x the status each must get.

After every refused call, nothing stored has changed. A stranger's 404 is the very answer the
same request gets for an id that doesn't exist. The per-feature tests (tests/lists,
tests/todos, tests/invitations) go into each rule; this table is the one place the whole
permission grid of the README's "Lists and sharing" is checked at once.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from httpx import AsyncClient, Response

from service.accounts.models import User
from service.core.clock import utc_now
from service.invitations.models import Invitation
from service.lists.models import Membership, TodoList
from service.todos.models import IdempotencyKey, Todo
from tests.utils import UserAccount, create_account, create_todo, new_email

ROLES = ("owner", "editor", "viewer", "stranger")
# Delta sync from a day ago (well within the tombstone retention), in the URL's own syntax.
SINCE = (utc_now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
# What a refused call must leave as it was (sessions and throttle counters are not the
# resources guarded here; a refused invitation may count against the inviter's daily limit).
GUARDED = (User, TodoList, Membership, Todo, Invitation, IdempotencyKey)


@dataclass(frozen=True)
class World:
    """A list shared with an editor, a viewer and one more viewer (`extra`, the member whose
    role is changed or who is removed), with a todo and a completed todo in it, a pending
    invitation addressed to the stranger, and a stranger; each user also has a todo of their
    own in their default list."""

    users: dict[str, UserAccount]
    extra: UserAccount
    list_id: str
    todo_id: str
    invitation_id: str
    own_todos: dict[str, str]

    def ids(self, role: str) -> dict[str, str]:
        """What the paths and bodies of a request made as `role` refer to."""
        user = self.users[role]
        return {
            "list": self.list_id,
            "todo": self.todo_id,
            "invitation": self.invitation_id,
            "extra": self.extra.id,
            "self": user.id,
            "editor": self.users["editor"].id,
            "own_list": user.id,  # a default list's id is its owner's
            "own_todo": self.own_todos[role],
            "since": SINCE,
        }


async def _joined(client: AsyncClient, owner: UserAccount, list_id: str, role: str) -> UserAccount:
    """A new user who joined the list with `role` by accepting an invitation."""
    user = await create_account(client)
    invited = await client.post(
        f"/api/lists/{list_id}/invitations",
        json={"email": user.email, "role": role},
        headers=owner.headers,
    )
    assert invited.status_code == 202, invited.text
    accepted = await client.post(
        f"/api/invitations/{invited.json()['id']}/accept", headers=user.headers
    )
    assert accepted.status_code == 200, accepted.text
    return user


async def _world(client: AsyncClient) -> World:
    owner = await create_account(client)
    created = await client.post("/api/lists", json={"name": "Shared"}, headers=owner.headers)
    assert created.status_code == 201, created.text
    list_id = created.json()["id"]
    editor = await _joined(client, owner, list_id, "editor")
    viewer = await _joined(client, owner, list_id, "viewer")
    extra = await _joined(client, owner, list_id, "viewer")
    stranger = await create_account(client)
    users = {"owner": owner, "editor": editor, "viewer": viewer, "stranger": stranger}
    todo = await create_todo(client, owner, "shared", list_id=list_id)
    await create_todo(client, owner, "done", list_id=list_id, completed=True)
    invitation = await client.post(
        f"/api/lists/{list_id}/invitations",
        json={"email": stranger.email, "role": "viewer"},
        headers=owner.headers,
    )
    assert invitation.status_code == 202, invitation.text
    own_todos = {
        role: (await create_todo(client, user, "mine"))["id"] for role, user in users.items()
    }
    return World(users, extra, list_id, todo["id"], invitation.json()["id"], own_todos)


async def _stored() -> list[list[dict[str, Any]]]:
    return [
        await model.get_pymongo_collection().find({}, sort=[("_id", 1)]).to_list(None)
        for model in GUARDED
    ]


Body = Callable[[dict[str, str]], dict[str, Any]] | None


@dataclass(frozen=True)
class Call:
    """One route, called with the ids of `World.ids`; `missing` names the id that, replaced by
    one of nothing, must give a stranger the same answer."""

    name: str
    method: str
    path: str
    expect: tuple[int, int, int, int]  # owner, editor, viewer, stranger
    body: Body = None
    missing: str = "list"


RANDOM_INVITATION = "Z" * 32  # an invitation id's shape, of none


CALLS = [
    # Lists.
    Call("read list", "GET", "/api/lists/{list}", (200, 200, 200, 404)),
    Call(
        "rename list", "PATCH", "/api/lists/{list}", (200, 403, 403, 404), lambda _: {"name": "New"}
    ),
    Call("delete list", "DELETE", "/api/lists/{list}", (204, 403, 403, 404)),
    Call(
        "transfer list",
        "POST",
        "/api/lists/{list}/transfer",
        (200, 403, 403, 404),
        lambda ids: {"user_id": ids["editor"]},
    ),
    # Members.
    Call("list members", "GET", "/api/lists/{list}/members", (200, 200, 200, 404)),
    Call(
        "change a role",
        "PATCH",
        "/api/lists/{list}/members/{extra}",
        (200, 403, 403, 404),
        lambda _: {"role": "editor"},
    ),
    Call("remove a member", "DELETE", "/api/lists/{list}/members/{extra}", (204, 403, 403, 404)),
    Call("leave", "DELETE", "/api/lists/{list}/members/{self}", (409, 204, 204, 404)),
    # Invitations.
    Call(
        "invite",
        "POST",
        "/api/lists/{list}/invitations",
        (202, 403, 403, 404),
        lambda _: {"email": new_email(), "role": "viewer"},
    ),
    Call("list invitations", "GET", "/api/lists/{list}/invitations", (200, 403, 403, 404)),
    Call(
        "revoke an invitation",
        "DELETE",
        "/api/lists/{list}/invitations/{invitation}",
        (204, 403, 403, 404),
    ),
    # The pending invitation is addressed to the stranger: theirs alone to answer.
    Call(
        "accept",
        "POST",
        "/api/invitations/{invitation}/accept",
        (404, 404, 404, 200),
        missing="invitation",
    ),
    Call(
        "decline",
        "POST",
        "/api/invitations/{invitation}/decline",
        (404, 404, 404, 204),
        missing="invitation",
    ),
    # Todos.
    Call("list todos", "GET", "/api/todos?list_id={list}", (200, 200, 200, 404)),
    Call(
        "sync todos",
        "GET",
        "/api/todos?list_id={list}&updated_since={since}&include_deleted=true",
        (200, 200, 200, 404),
    ),
    Call(
        "create a todo",
        "POST",
        "/api/todos",
        (201, 201, 403, 404),
        lambda ids: {"text": "new", "list_id": ids["list"]},
    ),
    Call(
        "clear completed",
        "POST",
        "/api/todos/clear-completed?list_id={list}",
        (200, 200, 403, 404),
    ),
    Call("read a todo", "GET", "/api/todos/{todo}", (200, 200, 200, 404), missing="todo"),
    Call(
        "update a todo",
        "PATCH",
        "/api/todos/{todo}",
        (200, 200, 403, 404),
        lambda _: {"completed": True},
        missing="todo",
    ),
    Call(
        "replace a todo",
        "PUT",
        "/api/todos/{todo}",
        (200, 200, 403, 404),
        lambda _: {"text": "replaced", "completed": False},
        missing="todo",
    ),
    Call("delete a todo", "DELETE", "/api/todos/{todo}", (204, 204, 403, 404), missing="todo"),
    Call(
        "move a todo out",
        "PATCH",
        "/api/todos/{todo}",
        (200, 200, 403, 404),
        lambda ids: {"list_id": ids["own_list"]},
        missing="todo",
    ),
    Call(
        "move a todo in",
        "PATCH",
        "/api/todos/{own_todo}",
        (200, 200, 403, 404),
        lambda ids: {"list_id": ids["list"]},
    ),
]


def _missing(ids: dict[str, str], name: str) -> dict[str, str]:
    """`ids` with `name` (and what stands for the same thing) replaced by an id of nothing."""
    nothing = RANDOM_INVITATION if name == "invitation" else str(ObjectId())
    return {**ids, name: nothing}


async def _call(
    client: AsyncClient, call: Call, user: UserAccount, ids: dict[str, str]
) -> Response:
    return await client.request(
        call.method,
        call.path.format(**ids),
        json=None if call.body is None else call.body(ids),
        headers=user.headers,
    )


@pytest.mark.parametrize("call", CALLS, ids=[call.name for call in CALLS])
@pytest.mark.parametrize("role", ROLES)
async def test_each_role_gets_its_status_and_a_refusal_changes_nothing(
    client: AsyncClient, call: Call, role: str
) -> None:
    world = await _world(client)
    user = world.users[role]
    ids = world.ids(role)
    expected = call.expect[ROLES.index(role)]
    before = await _stored()
    response = await _call(client, call, user, ids)
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert await _stored() == before
    if expected == 404:
        # The same answer as for something that doesn't exist at all.
        nothing = await _call(client, call, user, _missing(ids, call.missing))
        assert (nothing.status_code, nothing.json()) == (404, response.json())
