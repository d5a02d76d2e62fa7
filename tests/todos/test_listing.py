"""GET /api/todos: filters, sorts, cursors that stay stable while todos change."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from beanie import PydanticObjectId
from fastapi import FastAPI
from httpx import AsyncClient

from service.todos.listing import TodoFilters, list_query, sort_keys
from service.todos.models import Todo
from service.todos.schemas import SortOrder, TodoSort
from tests.todos.conftest import leave
from tests.utils import UserAccount, create_list, create_todo, share_list

Params = dict[str, Any]


async def ids(client: AsyncClient, user: UserAccount, **params: Any) -> list[str]:
    response = await client.get("/api/todos", params={"limit": 100, **params}, headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return [item["id"] for item in response.json()["items"]]


async def walk(
    client: AsyncClient,
    user: UserAccount,
    params: Params,
    between: Callable[[int], Awaitable[None]] | None = None,
) -> tuple[list[str], int]:
    """Every id of every page, in order, and the number of pages."""
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/todos", params=query, headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return seen, pages
        if between is not None:
            await between(pages)


# ---- filters ----


async def test_completed_filter(client: AsyncClient, alice: UserAccount) -> None:
    done = await create_todo(client, alice, completed=True)
    open_ = await create_todo(client, alice)
    assert await ids(client, alice, completed="true") == [done["id"]]
    assert await ids(client, alice, completed="false") == [open_["id"]]


async def test_every_tag_given_must_match(client: AsyncClient, alice: UserAccount) -> None:
    both = await create_todo(client, alice, tags=["work", "urgent"])
    work = await create_todo(client, alice, tags=["work"])
    await create_todo(client, alice, tags=["home"])
    assert await ids(client, alice, tag="work") == [work["id"], both["id"]]
    assert await ids(client, alice, tag=["work", "URGENT"]) == [both["id"]]
    assert await ids(client, alice, tag=["work", "home"]) == []


async def test_q_matches_text_or_notes_case_insensitively(
    client: AsyncClient, alice: UserAccount
) -> None:
    in_text = await create_todo(client, alice, "Buy MILK")
    in_notes = await create_todo(client, alice, "shopping", notes="oat milk, not cow")
    await create_todo(client, alice, "bread")
    assert await ids(client, alice, q="milk") == [in_notes["id"], in_text["id"]]


@pytest.mark.parametrize("q", [".*", "a+b", "(x", "[", "\\d", "$where"])
async def test_q_is_taken_literally(client: AsyncClient, alice: UserAccount, q: str) -> None:
    literal = await create_todo(client, alice, f"has {q} in it")
    await create_todo(client, alice, "aab x d anything")
    assert await ids(client, alice, q=q) == [literal["id"]]


async def test_due_bounds(client: AsyncClient, alice: UserAccount) -> None:
    nov = await create_todo(client, alice, due="2026-11-30")
    dec_morning = await create_todo(client, alice, due="2026-12-01T08:00:00+02:00")  # 06:00Z
    dec = await create_todo(client, alice, due="2026-12-01")
    await create_todo(client, alice)
    assert await ids(client, alice, due_before="2026-12-01") == [nov["id"]]
    assert await ids(client, alice, due_after="2026-12-01") == [dec["id"], dec_morning["id"]]
    assert await ids(
        client, alice, due_after="2026-12-01T05:00:00Z", due_before="2026-12-01T07:00:00+00:30"
    ) == [dec_morning["id"]]


async def test_priority_filter(client: AsyncClient, alice: UserAccount) -> None:
    high = await create_todo(client, alice, priority=3)
    await create_todo(client, alice, priority=1)
    assert await ids(client, alice, priority=3) == [high["id"]]


async def test_filters_combine(client: AsyncClient, alice: UserAccount) -> None:
    match = await create_todo(
        client, alice, "call Bob", tags=["work"], priority=2, due="2026-05-01"
    )
    await create_todo(client, alice, "call Bob", tags=["work"], priority=2, completed=True)
    await create_todo(client, alice, "call Bob", tags=["home"], priority=2)
    await create_todo(client, alice, "call Bob", tags=["work"], priority=1)
    await create_todo(client, alice, "email Bob", tags=["work"], priority=2)
    await create_todo(client, alice, "call Bob", tags=["work"], priority=2, due="2026-07-01")
    found = await ids(
        client,
        alice,
        completed="false",
        tag="work",
        priority=2,
        q="call",
        due_before="2026-06-01",
    )
    assert found == [match["id"]]


async def test_filters_never_show_other_users_todos(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    await create_todo(client, bob, "shared words", tags=["x"])
    assert await ids(client, alice, q="shared") == []
    assert await ids(client, alice, tag="x") == []


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "name"},
        {"order": "up"},
        {"priority": 4},
        {"tag": "two words"},
        {"tag": [f"t{i}" for i in range(21)]},
        {"q": ""},
        {"q": "x" * 201},
        {"due_before": "2026-12-01T10:00:00"},
        {"due_after": "soon"},
        {"completed": "maybe"},
    ],
)
@pytest.mark.mock_only
async def test_bad_listing_parameters_are_422(
    client: AsyncClient, alice: UserAccount, params: Params
) -> None:
    response = await client.get("/api/todos", params=params, headers=alice.headers)
    assert response.status_code == 422


# ---- sorting ----


async def test_sort_created_both_ways(client: AsyncClient, alice: UserAccount) -> None:
    created = [(await create_todo(client, alice, f"t{i}"))["id"] for i in range(3)]
    assert await ids(client, alice) == created[::-1]
    assert await ids(client, alice, sort="created", order="asc") == created


async def test_sort_updated_follows_the_last_change(
    client: AsyncClient, alice: UserAccount
) -> None:
    first, second, third = [await create_todo(client, alice, f"t{i}") for i in range(3)]
    await client.patch(f"/api/todos/{first['id']}", json={"notes": "x"}, headers=alice.headers)
    assert await ids(client, alice, sort="updated") == [first["id"], third["id"], second["id"]]
    assert await ids(client, alice, sort="updated", order="asc") == [
        second["id"],
        third["id"],
        first["id"],
    ]


async def test_sort_due_puts_todos_without_due_last_both_ways(
    client: AsyncClient, alice: UserAccount
) -> None:
    none_1 = await create_todo(client, alice)
    late = await create_todo(client, alice, due="2027-01-01")
    early = await create_todo(client, alice, due="2026-01-01T12:00:00+05:00")  # 07:00Z
    mid = await create_todo(client, alice, due="2026-01-01T08:00:00Z")
    none_2 = await create_todo(client, alice)
    assert await ids(client, alice, sort="due", order="asc") == [
        early["id"],
        mid["id"],
        late["id"],
        none_1["id"],
        none_2["id"],
    ]
    assert await ids(client, alice, sort="due", order="desc") == [
        late["id"],
        mid["id"],
        early["id"],
        none_2["id"],
        none_1["id"],
    ]


async def test_sort_priority_breaks_ties_by_creation(
    client: AsyncClient, alice: UserAccount
) -> None:
    low = await create_todo(client, alice, priority=0)
    high_1 = await create_todo(client, alice, priority=3)
    high_2 = await create_todo(client, alice, priority=3)
    assert await ids(client, alice, sort="priority") == [high_2["id"], high_1["id"], low["id"]]
    assert await ids(client, alice, sort="priority", order="asc") == [
        low["id"],
        high_1["id"],
        high_2["id"],
    ]


# ---- paging while writing ----

SORTS = [(sort, order) for sort in TodoSort for order in SortOrder]


@pytest.mark.parametrize(("sort", "order"), SORTS, ids=[f"{s}-{o}" for s, o in SORTS])
async def test_pages_neither_repeat_nor_skip_unchanged_todos_while_writing(
    client: AsyncClient, alice: UserAccount, sort: TodoSort, order: SortOrder
) -> None:
    todos = [
        await create_todo(
            client,
            alice,
            f"t{i}",
            priority=i % 3,
            due=None if i % 4 == 0 else f"2026-0{i % 3 + 1}-01",
        )
        for i in range(12)
    ]
    params = {"sort": sort.value, "order": order.value, "limit": 3}
    expected, _ = await walk(client, alice, params)
    changed: set[str] = set()

    async def write(page: int) -> None:
        # New todos, a change and a deletion between the first pages.
        if page * 2 + 1 >= len(todos):
            return
        await create_todo(client, alice, f"new {page}", priority=page % 4, due="2026-02-01")
        victim, edited = todos[page * 2], todos[page * 2 + 1]
        changed.update({victim["id"], edited["id"]})
        await client.delete(f"/api/todos/{victim['id']}", headers=alice.headers)
        await client.patch(
            f"/api/todos/{edited['id']}",
            json={"priority": 3, "due": "2026-02-15"},
            headers=alice.headers,
        )

    seen, pages = await walk(client, alice, params, between=write)
    assert pages >= 3
    unchanged = [todo_id for todo_id in expected if todo_id not in changed]
    # Each unchanged todo exactly once and in order (a changed one may move and show again).
    assert [todo_id for todo_id in seen if todo_id in unchanged] == unchanged


# ---- cursors ----


async def test_a_cursor_only_works_with_its_own_filters_and_sort(
    client: AsyncClient, alice: UserAccount
) -> None:
    for i in range(3):
        await create_todo(client, alice, f"t{i}", tags=["a"])
    first = await client.get(
        "/api/todos", params={"limit": 1, "tag": "a", "sort": "due"}, headers=alice.headers
    )
    cursor = first.json()["next_cursor"]
    same = await client.get(
        "/api/todos",
        params={"limit": 1, "tag": "A", "sort": "due", "cursor": cursor},
        headers=alice.headers,
    )
    assert same.status_code == 200
    for other in [
        {"sort": "due"},
        {"tag": "a", "sort": "created"},
        {"tag": "a", "sort": "due", "order": "asc"},
        {"tag": "a", "sort": "due", "completed": "false"},
        {"tag": "a", "sort": "due", "q": "t"},
    ]:
        response = await client.get(
            "/api/todos", params={**other, "cursor": cursor}, headers=alice.headers
        )
        assert response.status_code == 400, other
        assert "other filters or sort" in response.json()["detail"]


@pytest.mark.mock_only
async def test_the_cursor_pattern_is_documented(app: FastAPI) -> None:
    schema = app.openapi()
    parameters = schema["paths"]["/api/todos"]["get"]["parameters"]
    cursor = next(p for p in parameters if p["name"] == "cursor")
    assert "pattern" in str(cursor["schema"])


# ---- indexes ----

# The index meant to serve each listing order (listings pass no hint: see listing.sort_keys).
SORT_INDEXES = {
    TodoSort.CREATED: "todos_list_live_by_created",
    TodoSort.UPDATED: "todos_list_live_by_updated",
    TodoSort.DUE: "todos_list_live_by_due",
    TodoSort.PRIORITY: "todos_list_live_by_priority",
}


def _stages(plan: dict[str, Any]) -> list[dict[str, Any]]:
    stages = [plan]
    for key in ("inputStage", "inputStages"):
        child = plan.get(key)
        for sub in child if isinstance(child, list) else [child] if child else []:
            stages.extend(_stages(sub))
    return stages


# One list (a listing with list_id, or a caller with one list): several are an `$in` on
# list_id, whose plan SecantusDB's explain reports as a COLLSCAN although it runs from the
# index (docs/database.md has the measurement).
@pytest.mark.wire_only
@pytest.mark.parametrize(("sort", "order"), SORTS, ids=[f"{s}-{o}" for s, o in SORTS])
async def test_each_listing_scans_only_its_lists_part_of_its_index(
    client: AsyncClient, sort: TodoSort, order: SortOrder
) -> None:
    mine, other = PydanticObjectId(), PydanticObjectId()
    await Todo.insert_many(
        [
            Todo(list_id=each, created_by=each, text=f"t{i}", priority=i % 4)
            for i in range(20)
            for each in (mine, other)
        ]
    )
    keys = sort_keys(sort, order)
    # The index's fields after (list_id, deleted_at) are the sort keys, in order or reversed,
    # so a server that walks indexes in order (MongoDB) needs no in-memory sort. SecantusDB
    # sorts in memory, but only the live todos of the lists that the index scan yields.
    index = next(i for i in Todo.Settings.indexes if i.document["name"] == SORT_INDEXES[sort])
    suffix = list(index.document["key"].items())[2:]
    wanted = [(name, int(d)) for name, d in keys]
    assert wanted in (suffix, [(name, -d) for name, d in suffix]) or (
        sort is TodoSort.DUE and wanted[1:] == [(n, -d) for n, d in suffix[1:]]
    )
    # Without residual filters: SecantusDB runs a flat filter with extra fields from the list_id
    # index too, but its explain then reports a COLLSCAN (its explain and executor pick apart).
    filters = TodoFilters()
    query = list_query(lists=[mine], filters=filters, keys=keys)
    # The listing passes no hint: whichever plan the server picks must scan one live-todo
    # index, within the lists' keys (MongoDB picks the sort's own; SecantusDB the first).
    explain = await (
        Todo.get_pymongo_collection()
        .find(query, sort=[(name, int(d)) for name, d in keys])
        .explain()
    )
    stages = _stages(explain["queryPlanner"]["winningPlan"])
    scans = [stage for stage in stages if stage["stage"] == "IXSCAN"]
    assert len(scans) == 1
    assert scans[0]["indexName"] in SORT_INDEXES.values()
    assert explain["executionStats"]["totalKeysExamined"] <= 20


# ---- which lists: every readable one, or the one named ----


async def test_without_list_id_every_readable_list_is_listed(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    errands = await create_list(client, alice, "Errands")
    bobs = await create_list(client, bob, "Bob's")
    await share_list(client, bob, bobs["id"], alice, "viewer")
    private = await create_list(client, bob, "Private")
    inbox = await create_todo(client, alice, "inbox")
    errand = await create_todo(client, alice, "errand", list_id=errands["id"])
    shared = await create_todo(client, bob, "shared", list_id=bobs["id"])
    await create_todo(client, bob, "private", list_id=private["id"])
    await create_todo(client, bob, "bob's inbox")
    assert await ids(client, alice) == [shared["id"], errand["id"], inbox["id"]]
    newest = (await client.get("/api/mytodos", headers=alice.headers)).json()
    assert [item["id"] for item in newest] == [shared["id"], errand["id"], inbox["id"]]


async def test_list_id_lists_that_list_only(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    errands = await create_list(client, alice, "Errands")
    await share_list(client, alice, errands["id"], bob, "viewer")
    await create_todo(client, alice, "inbox")
    errand = await create_todo(client, alice, "errand", list_id=errands["id"])
    for user in (alice, bob):
        assert await ids(client, user, list_id=errands["id"]) == [errand["id"]]
    assert await ids(client, bob, list_id=bob.id) == []


@pytest.mark.parametrize("which", ["another users list", "no such list", "a list left"])
async def test_list_id_of_a_list_the_caller_cannot_read_is_404(
    client: AsyncClient, alice: UserAccount, bob: UserAccount, which: str
) -> None:
    list_id = {"another users list": bob.id, "no such list": str(PydanticObjectId())}.get(which)
    if list_id is None:
        shared = await create_list(client, bob)
        await share_list(client, bob, shared["id"], alice, "editor")
        await create_todo(client, bob, list_id=shared["id"])
        await leave(client, shared["id"], alice)
        list_id = shared["id"]
        assert await ids(client, alice) == []
    response = await client.get("/api/todos", params={"list_id": list_id}, headers=alice.headers)
    assert (response.status_code, response.json()) == (404, {"detail": "List not found"})


@pytest.mark.parametrize("list_id", ["abc", "z" * 24, "0" * 25])
@pytest.mark.mock_only
async def test_a_malformed_list_id_is_422(
    client: AsyncClient, alice: UserAccount, list_id: str
) -> None:
    response = await client.get("/api/todos", params={"list_id": list_id}, headers=alice.headers)
    assert response.status_code == 422


@pytest.mark.parametrize("scoped", [False, True], ids=["every-list", "one-list"])
@pytest.mark.parametrize(("sort", "order"), SORTS, ids=[f"{s}-{o}" for s, o in SORTS])
async def test_filters_sorts_and_pages_work_in_both_forms(
    client: AsyncClient, alice: UserAccount, sort: TodoSort, order: SortOrder, scoped: bool
) -> None:
    errands = await create_list(client, alice, "Errands")
    expected: list[str] = []
    for i in range(12):
        list_id = errands["id"] if i % 2 else alice.id
        todo = await create_todo(
            client, alice, f"t{i}", list_id=list_id, tags=["x"] if i % 3 else [], priority=i % 4
        )
        if i % 3 and (not scoped or list_id == errands["id"]):
            expected.append(todo["id"])
    params = {"tag": "x", "sort": sort.value, "order": order.value, "limit": 2}
    if scoped:
        params["list_id"] = errands["id"]
    seen, pages = await walk(client, alice, params)
    everything = await ids(client, alice, **{k: v for k, v in params.items() if k != "limit"})
    assert seen == everything
    assert sorted(seen) == sorted(expected)
    assert pages == (len(expected) + 1) // 2


async def test_a_cursor_is_bound_to_the_list_it_pages(
    client: AsyncClient, alice: UserAccount
) -> None:
    errands = await create_list(client, alice, "Errands")
    for i in range(3):
        await create_todo(client, alice, f"t{i}", list_id=errands["id"])
        await create_todo(client, alice, f"u{i}")
    for first, other in [
        ({"list_id": errands["id"]}, {}),
        ({}, {"list_id": errands["id"]}),
        ({"list_id": errands["id"]}, {"list_id": alice.id}),
    ]:
        page = (
            await client.get("/api/todos", params={**first, "limit": 1}, headers=alice.headers)
        ).json()
        response = await client.get(
            "/api/todos",
            params={**other, "limit": 1, "cursor": page["next_cursor"]},
            headers=alice.headers,
        )
        assert response.status_code == 400, (first, other)


async def test_pages_of_every_list_stay_whole_when_a_list_is_shared_meanwhile(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    """The cursor of "every list" stays valid when the caller's lists change: later pages
    just cover the lists as they are then."""
    mine = [await create_todo(client, alice, f"t{i}") for i in range(4)]
    first = (await client.get("/api/todos", params={"limit": 2}, headers=alice.headers)).json()
    shared = await create_list(client, bob)
    await create_todo(client, bob, "newer than the cursor", list_id=shared["id"])
    await share_list(client, bob, shared["id"], alice, "viewer")
    rest = await client.get(
        "/api/todos", params={"limit": 2, "cursor": first["next_cursor"]}, headers=alice.headers
    )
    assert rest.status_code == 200
    seen = [item["id"] for item in first["items"] + rest.json()["items"]]
    assert seen == [todo["id"] for todo in reversed(mine)]
