"""POST /api/import with a Todoist project CSV (Content-Type: text/csv)."""

from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient

from service.app import create_app
from service.config import Settings
from service.todos.schemas import MAX_TAGS, TODO_NOTES_MAX_LENGTH
from service.transfer.todoist import split_labels
from tests.transfer.conftest import export_json, stored_state
from tests.utils import UserAccount

# A project as Todoist exports it (modelled on the documented columns, the newer DURATION and
# DEADLINE ones and two it adds without documenting them, `meta` and `IS_COLLAPSED`): a BOM,
# CRLF rows, a blank row, a section, notes below a task, labels, a sub-task, every priority
# (and an empty one), explicit and natural-language dates, and cells with commas, quotes and a
# line break.
PROJECT = Path(__file__).parent / "files" / "todoist_project.csv"
HEADER = "TYPE,CONTENT,DESCRIPTION,PRIORITY,INDENT,AUTHOR,RESPONSIBLE,DATE,DATE_LANG,TIMEZONE"
CSV = {"Content-Type": "text/csv"}


async def _import_csv(
    client: AsyncClient,
    user: UserAccount,
    body: bytes | str,
    *,
    content_type: str = "text/csv",
    **params: str,
) -> Any:
    content = body.encode() if isinstance(body, str) else body
    return await client.post(
        "/api/import",
        content=content,
        params=params,
        headers={**user.headers, "Content-Type": content_type},
    )


def _file(*rows: str) -> str:
    return "\r\n".join([HEADER, *rows]) + "\r\n"


def _todos_of(exported: dict[str, Any], name: str) -> list[dict[str, Any]]:
    keep = ("text", "notes", "completed", "due", "priority", "tags")
    [found] = [each for each in exported["lists"] if each["name"] == name]
    return [{key: todo[key] for key in keep} for todo in found["todos"]]


async def test_a_todoist_export_becomes_one_new_list_of_todos(
    client: AsyncClient, alice: UserAccount
) -> None:
    raw = PROJECT.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the fixture keeps its BOM
    response = await _import_csv(client, alice, raw, list_name="Home")
    assert response.status_code == 201, response.text
    assert response.json() == {"lists": 1, "todos": 5}
    exported = await export_json(client, alice)
    assert [(each["name"], each["default"], each["role"]) for each in exported["lists"]] == [
        ("Inbox", True, "owner"),
        ("Home", False, "owner"),
    ]
    assert _todos_of(exported, "Inbox") == []
    assert _todos_of(exported, "Home") == [
        {
            "text": "Pay rent",
            "notes": "",
            "completed": False,
            "due": "2026-12-01",
            "priority": 3,
            "tags": ["home", "money"],
        },
        {
            "text": "Call the landlord about the heating",
            "notes": (
                "Ask about: boiler, radiators\n\n"
                "Todoist date: every monday at 9am (Europe/Berlin)\n"
                "Todoist deadline: 2026-12-24\n"
                "Todoist duration: 30 minute\n\n"
                'He said "next week"\n\n'
                "Line one\nline two"
            ),
            "completed": False,
            "due": None,
            "priority": 2,
            "tags": ["phone"],
        },
        {
            "text": "Buy milk @café",
            "notes": "Todoist section: Shopping\nTodoist date: tomorrow (Europe/Berlin)",
            "completed": False,
            "due": None,
            "priority": 0,
            "tags": ["errands"],
        },
        {
            "text": "Semi-skimmed",
            "notes": "Todoist section: Shopping\nTodoist sub-task of: Buy milk @café",
            "completed": False,
            "due": "2026-12-02T18:30:00+01:00",
            "priority": 1,
            "tags": ["errands"],
        },
        {
            # Kept as written: formulas are neutralised where a file is written (the export).
            "text": "=SUM(A1), mail bob@example.com",
            "notes": "Todoist section: Shopping",
            "completed": False,
            "due": None,
            "priority": 3,  # an empty PRIORITY is p1, as Todoist documents
            "tags": [],
        },
    ]
    # The todos are the importer's, whoever the file named as AUTHOR or RESPONSIBLE.
    [home] = [each for each in exported["lists"] if each["name"] == "Home"]
    assert {todo["created_by"] for todo in home["todos"]} == {alice.id}


async def test_the_list_is_named_todoist_unless_list_name_says_otherwise(
    client: AsyncClient, alice: UserAccount
) -> None:
    response = await _import_csv(
        client, alice, _file("task,One,,,,,,,,"), content_type="text/csv; charset=utf-8"
    )
    assert response.status_code == 201, response.text
    names = [each["name"] for each in (await export_json(client, alice))["lists"]]
    assert names == ["Inbox", "Todoist"]


async def test_a_header_only_file_makes_an_empty_list(
    client: AsyncClient, alice: UserAccount
) -> None:
    response = await _import_csv(client, alice, HEADER + "\n", list_name="Empty project")
    assert response.status_code == 201
    assert response.json() == {"lists": 1, "todos": 0}


async def test_only_the_type_and_content_columns_are_required(
    client: AsyncClient, alice: UserAccount
) -> None:
    response = await _import_csv(client, alice, "CONTENT,TYPE\nBuy milk @errands,task\n")
    assert response.status_code == 201, response.text
    assert _todos_of(await export_json(client, alice), "Todoist") == [
        {
            "text": "Buy milk",
            "notes": "",
            "completed": False,
            "due": None,
            "priority": 3,
            "tags": ["errands"],
        }
    ]


async def test_a_task_of_nothing_but_labels_keeps_them_as_its_text(
    client: AsyncClient, alice: UserAccount
) -> None:
    response = await _import_csv(client, alice, _file("task,@waiting @Phone,,4,1,,,,,"))
    assert response.status_code == 201, response.text
    [todo] = _todos_of(await export_json(client, alice), "Todoist")
    assert (todo["text"], todo["tags"]) == ("@waiting @Phone", ["waiting", "phone"])


@pytest.mark.parametrize(
    ("content", "text", "tags"),
    [
        ("Buy milk @errands", "Buy milk", ["errands"]),
        ("Call @phone mom", "Call mom", ["phone"]),
        ("@home Clean", " Clean", ["home"]),  # the todo's text is trimmed
        ("Two lines\n@home then more", "Two lines\n then more", ["home"]),
        ("@A @a dup", " dup", ["a"]),  # tags are lower-case, duplicates merged
        ("mail bob@example.com", "mail bob@example.com", []),  # `@` inside a word
        ("Buy @café and @x.y", "Buy @café and @x.y", []),  # not tags: left in the text
        (f"Long @{'a' * 33}", f"Long @{'a' * 33}", []),
        ("Lonely @ sign", "Lonely @ sign", []),
    ],
)
def test_labels_that_fit_our_tags_become_tags(content: str, text: str, tags: list[str]) -> None:
    assert split_labels(content) == (text, tags)


def test_labels_past_the_tag_limit_stay_in_the_text() -> None:
    labels = " ".join(f"@t{n}" for n in range(MAX_TAGS + 2))
    text, tags = split_labels(f"Many {labels}")
    assert tags == [f"t{n}" for n in range(MAX_TAGS)]
    assert text == f"Many @t{MAX_TAGS} @t{MAX_TAGS + 1}"


LONG_NOTE = "n" * (TODO_NOTES_MAX_LENGTH - 10)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (_file("Task,Capitalised type,,1,1,,,,,"), "rows[2].TYPE"),
        (_file("task,ok,,1,1,,,,,", "comment,Unknown,,,,,,,,"), "rows[3].TYPE"),
        (_file("task,Five,,5,1,,,,,"), "rows[2].PRIORITY"),
        (_file("task,ok,,1,1,,,,,", "task,Words,,p1,1,,,,,"), "rows[3].PRIORITY"),
        (_file("task,Zero,,1,0,,,,,"), "rows[2].INDENT"),
        (_file("task,Deep,,1,1000,,,,,"), "rows[2].INDENT"),
        (_file("note,Before any task,,,,,,,,"), "rows[2].TYPE"),
        (
            _file("task,ok,,1,1,,,,,", "section,S,,,,,,,,", "note,Under a section,,,,,,,,"),
            "rows[4].TYPE",
        ),
        # A blank row is a row (3) as a spreadsheet shows it; a line break in a cell is not.
        (
            _file("task,a,,1,1,,,,,", ",,,,,,,,,", 'task,"b\nc",,1,1,,,,,', "task,d,,9,1,,,,,"),
            "rows[5].PRIORITY",
        ),
        (_file(f"task,ok,{'d' * (TODO_NOTES_MAX_LENGTH + 1)},1,1,,,,,"), "rows[2].DESCRIPTION"),
        (
            _file(f"task,ok,{LONG_NOTE},1,1,,,,,", "note,just over the notes limit,,,,,,,,"),
            "rows[3].CONTENT",
        ),
        (_file("task,ok,x,1,1,,,every day,,", f"note,{LONG_NOTE},,,,,,,,"), "rows[3].CONTENT"),
        (_file("task,,,1,1,,,,,"), "rows[2].CONTENT"),
        (_file("task, ,,1,1,,,,,"), "rows[2].CONTENT"),
        (_file(f"task,{'t' * 1001},,1,1,,,,,"), "rows[2].CONTENT"),
        (_file("task,ok,,1,1,,,,,,extra"), "rows[2]"),
        (_file('task,"open quote,,1,1,,,,,'), "rows[2]"),
        (_file('task,"closed" then text,,1,1,,,,,'), "rows[2]"),
        ("TYPE,DESCRIPTION\r\ntask,no content column\r\n", "rows[1]"),
        ("CONTENT\r\nno type column\r\n", "rows[1]"),
        ("TYPE,CONTENT,TYPE\r\ntask,twice,task\r\n", "rows[1].TYPE"),
        ("", "rows[1]"),
        ("\ufeff\ufeffTYPE,CONTENT\r\ntask,two BOMs\r\n", "rows[1]"),
        (b"TYPE,CONTENT\r\ntask,caf\xe9 in Latin-1\r\n", ""),
    ],
)
async def test_an_invalid_todoist_file_is_422_with_the_row_and_writes_nothing(
    client: AsyncClient, alice: UserAccount, body: str | bytes, path: str
) -> None:
    before = await stored_state()
    response = await _import_csv(client, alice, body)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert path in [error["path"] for error in errors], errors
    assert all(set(error) == {"type", "loc", "msg", "path"} for error in errors)
    assert await stored_state() == before


async def test_every_bad_row_is_reported_up_to_the_bound(
    client: AsyncClient, alice: UserAccount
) -> None:
    response = await _import_csv(client, alice, _file(*["task,t,,7,1,,,,,"] * 30))
    assert response.status_code == 422
    paths = [error["path"] for error in response.json()["detail"]]
    assert paths == [f"rows[{row}].PRIORITY" for row in range(2, 22)]
    assert response.json()["detail"][0]["loc"] == ["body", "rows", 2, "PRIORITY"]


@pytest.mark.parametrize("settings_overrides", [{"import_max_todos": 2}])
async def test_more_task_rows_than_import_max_todos_is_422(
    client: AsyncClient, alice: UserAccount
) -> None:
    notes = ["note,notes are not todos,,,,,,,,"] * 3
    fits = _file("task,a,,1,1,,,,,", *notes, "section,S,,,,,,,,", "task,b,,1,1,,,,,")
    assert (await _import_csv(client, alice, fits)).status_code == 201
    response = await _import_csv(client, alice, _file(*["task,t,,1,1,,,,,"] * 3))
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["path"] == "rows"
    assert "At most 2 todos per import; this file has 3" in error["msg"]


@pytest.mark.parametrize("settings_overrides", [{"max_todos_per_list": 2}])
async def test_more_task_rows_than_max_todos_per_list_is_422(
    client: AsyncClient, alice: UserAccount
) -> None:
    response = await _import_csv(client, alice, _file(*["task,t,,1,1,,,,,"] * 3))
    assert response.status_code == 422
    assert [error["path"] for error in response.json()["detail"]] == ["rows"]


@pytest.mark.parametrize("settings_overrides", [{"max_lists_per_user": 1}])
async def test_past_max_lists_per_user_is_409_and_nothing_stays(
    client: AsyncClient, alice: UserAccount
) -> None:
    before = await stored_state()
    response = await _import_csv(client, alice, _file("task,t,,1,1,,,,,"))
    assert response.status_code == 409
    assert await stored_state() == before


@pytest.mark.parametrize("list_name", ["", " ", "n" * 101])
async def test_a_bad_list_name_is_422(
    client: AsyncClient, alice: UserAccount, list_name: str
) -> None:
    before = await stored_state()
    response = await _import_csv(client, alice, _file("task,t,,1,1,,,,,"), list_name=list_name)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "list_name"]
    assert await stored_state() == before


async def test_the_list_name_is_trimmed(client: AsyncClient, alice: UserAccount) -> None:
    response = await _import_csv(client, alice, _file("task,t,,1,1,,,,,"), list_name=" Work ")
    assert response.status_code == 201
    names = [each["name"] for each in (await export_json(client, alice))["lists"]]
    assert names == ["Inbox", "Work"]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
async def test_another_body_type_is_415(
    client: AsyncClient, alice: UserAccount, content_type: str
) -> None:
    before = await stored_state()
    response = await _import_csv(
        client, alice, _file("task,t,,1,1,,,,,"), content_type=content_type
    )
    assert response.status_code == 415
    assert response.json() == {
        "detail": (
            "Unsupported media type: send an export as application/json, "
            "or a Todoist CSV as text/csv"
        )
    }
    assert await stored_state() == before


async def test_a_body_without_a_content_type_is_415_as_on_every_json_route(
    client: AsyncClient, alice: UserAccount
) -> None:
    before = await stored_state()
    body = b'{"version": 1, "lists": [{"name": "L", "todos": [{"text": "t"}]}]}'
    response = await client.post("/api/import", content=body, headers=alice.headers)
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]
    assert await stored_state() == before
    # The same bytes as JSON are an export.
    sent = await client.post(
        "/api/import", content=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert sent.status_code == 201, sent.text


async def test_a_todoist_import_needs_a_token(client: AsyncClient) -> None:
    response = await client.post("/api/import", content=_file("task,t,,,,,,,,"), headers=CSV)
    assert response.status_code == 401


def test_openapi_documents_both_request_bodies(settings: Settings) -> None:
    operation = create_app(settings).openapi()["paths"]["/api/import"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "text/csv"}
    assert content["text/csv"]["schema"]["type"] == "string"
    assert content["text/csv"]["example"].startswith("TYPE,CONTENT,")
    assert "415" in operation["responses"]
    assert "Todoist CSV" in operation["responses"]["415"]["description"]
    [list_name] = [p for p in operation["parameters"] if p["name"] == "list_name"]
    assert list_name["in"] == "query"
    assert list_name["schema"]["maxLength"] == 100
