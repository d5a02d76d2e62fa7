"""Who may do what: every list and member route for the owner, an editor, a viewer and a
stranger, and nothing changed by any refused call."""

from typing import Any

import pytest
from bson import ObjectId
from httpx import AsyncClient

from tests.lists.conftest import Shared, stored_state

ROLES = ("owner", "editor", "viewer", "stranger")


# (method, path, body, {role: status}). In paths and bodies, {list} is the shared list's id,
# {self} the caller's user id, {other} another member's (the viewer's; the editor's for the
# viewer), {editor} the editor's.
CASES: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
    ("GET", "/api/lists/{list}", None, {"owner": 200, "editor": 200, "viewer": 200}),
    ("PATCH", "/api/lists/{list}", {"name": "Renamed"}, {"owner": 200}),
    ("DELETE", "/api/lists/{list}", None, {"owner": 204}),
    ("GET", "/api/lists/{list}/members", None, {"owner": 200, "editor": 200, "viewer": 200}),
    ("PATCH", "/api/lists/{list}/members/{other}", {"role": "editor"}, {"owner": 200}),
    ("DELETE", "/api/lists/{list}/members/{other}", None, {"owner": 204}),
    (
        "DELETE",
        "/api/lists/{list}/members/{self}",
        None,
        {"owner": 409, "editor": 204, "viewer": 204},
    ),
    ("POST", "/api/lists/{list}/transfer", {"user_id": "{editor}"}, {"owner": 200}),
]


def expected(statuses: dict[str, int], role: str) -> int:
    """Members whose role doesn't allow it get 403; anyone else 404."""
    return statuses.get(role, 404 if role == "stranger" else 403)


def fill(template: Any, values: dict[str, str]) -> Any:
    if isinstance(template, str):
        return template.format(**values)
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    return template


def placeholders(shared: Shared, role: str, list_id: str | None = None) -> dict[str, str]:
    caller = shared.of(role)
    return {
        "list": list_id or shared.id,
        "self": caller.id,
        "other": (shared.editor if role == "viewer" else shared.viewer).id,
        "editor": shared.editor.id,
    }


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("method", "path", "body", "statuses"), CASES, ids=[f"{c[0]} {c[1]}" for c in CASES]
)
async def test_who_may_do_what(
    client: AsyncClient,
    shared: Shared,
    role: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    statuses: dict[str, int],
) -> None:
    status = expected(statuses, role)
    values = placeholders(shared, role)
    before = await stored_state()
    response = await client.request(
        method, fill(path, values), json=fill(body, values), headers=shared.of(role).headers
    )
    assert response.status_code == status, response.text
    if status >= 400:
        assert await stored_state() == before
        detail = response.json()["detail"]
        if status == 403:
            assert detail == "Only the list's owner can do this"
        if status == 404:
            # A stranger learns nothing: the answer for a list that doesn't exist, exactly.
            values["list"] = str(ObjectId())
            missing = await client.request(
                method, fill(path, values), json=fill(body, values), headers=shared.of(role).headers
            )
            assert (missing.status_code, missing.json()) == (404, {"detail": "List not found"})
            assert response.json() == missing.json()


async def test_a_stranger_doesnt_see_the_list_in_theirs(
    client: AsyncClient, shared: Shared
) -> None:
    for role in ROLES:
        page = await client.get("/api/lists", headers=shared.of(role).headers)
        ids = [item["id"] for item in page.json()["items"]]
        assert (shared.id in ids) is (role != "stranger"), role


async def test_a_removed_member_is_a_stranger_at_once(client: AsyncClient, shared: Shared) -> None:
    removed = await client.delete(
        f"{shared.url}/members/{shared.viewer.id}", headers=shared.owner.headers
    )
    assert removed.status_code == 204
    # The same token: the memberships are read with the session on every request.
    response = await client.get(shared.url, headers=shared.viewer.headers)
    assert (response.status_code, response.json()) == (404, {"detail": "List not found"})
