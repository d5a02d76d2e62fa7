"""Who may do what with the todos of a shared list: owner, editor, viewer and a stranger on
every todo route; a refused call changes nothing, and a stranger's 404 is that of an id that
doesn't exist."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from httpx import AsyncClient

from tests.todos.conftest import ROLES, Team, snapshot
from tests.utils import create_todo

# Delta sync answers up to a watermark SYNC_LAG_MS in the past: none here, so that a todo
# just written is in the answer.
pytestmark = pytest.mark.parametrize("settings_overrides", [{"sync_lag_ms": 0}])

TODO_NOT_FOUND = {"detail": "Todo not found"}
LIST_NOT_FOUND = {"detail": "List not found"}
VIEWER_REFUSED = {
    "detail": "Viewers can't change this list's todos; ask its owner for the editor role"
}


@dataclass(frozen=True)
class Route:
    method: str
    # {todo} and {list} are replaced by the todo's and the list's ids.
    url: str
    body: dict[str, Any] | None
    # The status for a member allowed to do it, and what a viewer gets.
    ok: int
    viewer: int
    # What the stranger's 404 says: the todo's or the list's.
    not_found: dict[str, str]


def _since() -> str:
    return (datetime.now(UTC) - timedelta(minutes=5)).isoformat()


ROUTES = {
    "read": Route("GET", "/api/todos/{todo}", None, 200, 200, TODO_NOT_FOUND),
    "replace": Route(
        "PUT",
        "/api/todos/{todo}",
        {"text": "replaced", "completed": False},
        200,
        403,
        TODO_NOT_FOUND,
    ),
    "update": Route("PATCH", "/api/todos/{todo}", {"text": "patched"}, 200, 403, TODO_NOT_FOUND),
    # An empty PATCH changes nothing, but it is a write: a viewer may not make it.
    "update-nothing": Route("PATCH", "/api/todos/{todo}", {}, 200, 403, TODO_NOT_FOUND),
    "delete": Route("DELETE", "/api/todos/{todo}", None, 204, 403, TODO_NOT_FOUND),
    "create": Route(
        "POST", "/api/todos", {"text": "new", "list_id": "{list}"}, 201, 403, LIST_NOT_FOUND
    ),
    "list": Route("GET", "/api/todos?list_id={list}", None, 200, 200, LIST_NOT_FOUND),
    "sync": Route(
        "GET",
        "/api/todos?list_id={list}&include_deleted=true&updated_since={since}",
        None,
        200,
        200,
        LIST_NOT_FOUND,
    ),
    "clear-completed": Route(
        "POST", "/api/todos/clear-completed?list_id={list}", None, 200, 403, LIST_NOT_FOUND
    ),
}


def expected_status(route: Route, role: str) -> int:
    return {"owner": route.ok, "editor": route.ok, "viewer": route.viewer}.get(role, 404)


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    return value


async def call(
    client: AsyncClient, team: Team, route: Route, role: str, todo_id: str, list_id: str
) -> Any:
    ids = {"todo": todo_id, "list": list_id, "since": _since().replace("+", "%2B")}
    return await client.request(
        route.method,
        _fill(route.url, ids),
        json=_fill(route.body, ids),
        headers=team.user(role).headers,
    )


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", list(ROUTES))
async def test_every_todo_route_by_role(
    client: AsyncClient, team: Team, name: str, role: str
) -> None:
    route = ROUTES[name]
    todo = await create_todo(client, team.owner, "shared", list_id=team.list_id, completed=True)
    before = await snapshot()
    response = await call(client, team, route, role, todo["id"], team.list_id)
    assert response.status_code == expected_status(route, role), response.text
    if response.status_code == 403:
        assert response.json() == VIEWER_REFUSED
    if response.status_code == 404:
        assert response.json() == route.not_found
        # The same answer as for an id that doesn't exist, asked by the list's owner.
        missing = await call(client, team, route, "owner", str(ObjectId()), str(ObjectId()))
        assert (missing.status_code, missing.json()) == (404, route.not_found)
    if response.status_code >= 400:
        assert await snapshot() == before
        return
    user = team.user(role)
    if name in {"read", "replace", "update", "update-nothing"}:
        body = response.json()
        assert (body["id"], body["list_id"], body["created_by"]) == (
            todo["id"],
            team.list_id,
            team.owner.id,
        )
    if name == "create":
        body = response.json()
        assert (body["list_id"], body["created_by"]) == (team.list_id, user.id)
    if name in {"list", "sync"}:
        assert [item["id"] for item in response.json()["items"]] == [todo["id"]]
    if name in {"delete", "clear-completed"}:
        gone = await client.get(f"/api/todos/{todo['id']}", headers=team.owner.headers)
        assert gone.status_code == 404


@pytest.mark.parametrize("role", ROLES)
async def test_a_viewer_is_refused_before_if_match_is_looked_at(
    client: AsyncClient, team: Team, role: str
) -> None:
    """Role first, then version: a stale If-Match says 412 only to those who may write."""
    todo = await create_todo(client, team.owner, list_id=team.list_id)
    await client.patch(f"/api/todos/{todo['id']}", json={"notes": "v2"}, headers=team.owner.headers)
    before = await snapshot()
    response = await client.patch(
        f"/api/todos/{todo['id']}",
        json={"notes": "v3"},
        headers={**team.user(role).headers, "If-Match": '"1"'},
    )
    assert response.status_code == {"viewer": 403, "stranger": 404}.get(role, 412)
    assert await snapshot() == before


@pytest.mark.parametrize("role", ["editor", "viewer"])
async def test_members_see_the_shared_todos_in_every_listing(
    client: AsyncClient, team: Team, role: str
) -> None:
    shared = await create_todo(client, team.owner, "shared", list_id=team.list_id)
    user = team.user(role)
    own = await create_todo(client, user, "own")
    listed = (await client.get("/api/todos", headers=user.headers)).json()
    assert [item["id"] for item in listed["items"]] == [own["id"], shared["id"]]
    newest = (await client.get("/api/mytodos", headers=user.headers)).json()
    assert [item["id"] for item in newest] == [own["id"], shared["id"]]
    sync = (
        await client.get(
            "/api/todos",
            params={"updated_since": _since(), "include_deleted": "true"},
            headers=user.headers,
        )
    ).json()
    assert [item["id"] for item in sync["items"]] == [shared["id"], own["id"]]


async def test_a_stranger_sees_none_of_the_shared_todos(client: AsyncClient, team: Team) -> None:
    await create_todo(client, team.owner, "shared", list_id=team.list_id)
    headers = team.stranger.headers
    assert (await client.get("/api/todos", headers=headers)).json()["items"] == []
    assert (await client.get("/api/mytodos", headers=headers)).json() == []
    sync = await client.get(
        "/api/todos",
        params={"updated_since": _since(), "include_deleted": "true"},
        headers=headers,
    )
    assert sync.json()["items"] == []
    cleared = await client.post("/api/todos/clear-completed", headers=headers)
    assert cleared.json() == {"deleted": 0}
