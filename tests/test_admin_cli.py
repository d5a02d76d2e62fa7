"""The admin commands of `python -m service`, run as an administrator runs them: a child
process against the wire tier's server (each test on a database of its own), or the embedded
default. Exit status 0 done, 1 failed, 2 usage; errors are one line on stderr."""

import asyncio
import json
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from bson import Binary, Decimal128, Int64, ObjectId
from httpx import AsyncClient
from pymongo import MongoClient
from pymongo.database import Database

from service.admin import RESTORE_LOCK
from service.db import MongoDatabase
from service.embedded import free_port
from tests.test_cli import service_env
from tests.utils import UserAccount, create_account, create_list, create_todo, share_list

PASSWORD = "admin cli password"


class Admin:
    """Runs `python -m service ...` on one database of the wire server."""

    def __init__(self, url: str, database: str, cwd: Path) -> None:
        self.url, self.database, self.cwd = url, database, cwd

    def __call__(
        self, *argv: str, stdin: str = "", database: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        values = {
            "ENVIRONMENT": "development",
            "MONGODB_URL": self.url,
            "MONGODB_DB": database or self.database,
            **env,
        }
        return subprocess.run(
            [sys.executable, "-m", "service", *argv],
            env=service_env(**values),
            cwd=self.cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def create_user(self, email: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self(
            "create-user",
            "--email",
            email,
            "--fname",
            "Ada",
            "--lname",
            "Admin",
            "--password-stdin",
            stdin=PASSWORD + "\n",
            **env,
        )


@pytest.fixture
def mongo(wire_url: str) -> Iterator[MongoClient[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(wire_url, tz_aware=True)
    with client:
        yield client


@pytest.fixture
def names(mongo: MongoClient[dict[str, Any]]) -> Iterator[list[str]]:
    """Database names for this test; dropped after it."""
    made = [f"cli_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    yield made
    for name in made:
        mongo.drop_database(name)


@pytest.fixture
def admin(wire_url: str, names: list[str], tmp_path: Path) -> Admin:
    return Admin(wire_url, names[0], tmp_path)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    [line] = result.stderr.strip().splitlines()
    return line


def contents(database: Database[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {
        name: list(database[name].find({}, sort=[("_id", 1)]))
        for name in sorted(database.list_collection_names())
    }


def index_names(database: Database[dict[str, Any]]) -> dict[str, set[str]]:
    return {
        name: {index["name"] for index in database[name].list_indexes()}
        for name in database.list_collection_names()
    }


COMMANDS = ["create-user", "delete-user", "list-users", "export", "check", "dump", "restore"]


def test_the_console_script_lists_every_command(tmp_path: Path) -> None:
    """`todo-service` (pyproject's console script) runs the same parser."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("todo-service")), "--help"],
        env=service_env(ENVIRONMENT="production"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "{serve," + ",".join(COMMANDS) + "}" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_admin_command_has_help_that_needs_no_settings(tmp_path: Path, command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", command, "--help"],
        env=service_env(ENVIRONMENT="production"),  # no SECRET_KEY: settings would fail
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: todo-service {command}")
    assert "MONGODB_URL" in result.stdout


def test_a_missing_argument_is_a_usage_error(admin: Admin) -> None:
    result = admin("delete-user")
    assert result.returncode == 2
    assert "EMAIL" in one_line(result)
    assert "see todo-service delete-user --help" in result.stderr


def test_create_user_signs_up_with_a_default_list(
    admin: Admin, mongo: MongoClient[dict[str, Any]]
) -> None:
    result = admin.create_user("Ada@Example.com")
    assert result.returncode == 0, result.stderr
    database = mongo[admin.database]
    user = database["users"].find_one({"email": "ada@example.com"})
    assert user is not None
    assert user["hashed_password"].startswith("$argon2")
    assert database["lists"].find_one({"_id": user["_id"]}) is not None, "the default list"
    assert str(user["_id"]) in result.stdout


def test_create_user_refuses_a_taken_email_in_one_line(admin: Admin) -> None:
    assert admin.create_user("ada@example.com").returncode == 0
    again = admin.create_user("ADA@example.com")
    assert again.returncode == 1
    assert one_line(again) == "todo-service create-user: ada@example.com: Email already registered."


def test_create_user_with_invalid_input_is_a_usage_error(admin: Admin) -> None:
    result = admin(
        "create-user", "--email", "not an email", "--fname", "A", "--lname", "B",
        "--password-stdin", stdin="short\n",
    )  # fmt: skip
    assert result.returncode == 2
    line = one_line(result)
    assert "email" in line
    assert "password" in line


def test_create_user_without_a_terminal_needs_password_stdin(admin: Admin) -> None:
    result = admin("create-user", "--email", "a@example.com", "--fname", "A", "--lname", "B")
    assert result.returncode == 2
    assert "--password-stdin" in one_line(result)


def test_list_users_lists_every_user_oldest_first(admin: Admin) -> None:
    for email in ("first@example.com", "second@example.com"):
        assert admin.create_user(email).returncode == 0
    plain = admin("list-users")
    assert plain.returncode == 0, plain.stderr
    rows = [line.split("\t") for line in plain.stdout.splitlines()]
    assert [row[1] for row in rows] == ["first@example.com", "second@example.com"]
    assert rows[0][2:4] == ["Ada", "Admin"]
    as_json = admin("list-users", "--json")
    assert '"email":"second@example.com"' in as_json.stdout.splitlines()[1]
    assert "hashed_password" not in as_json.stdout


def test_delete_user_deletes_the_user_and_their_lists(
    admin: Admin, mongo: MongoClient[dict[str, Any]]
) -> None:
    assert admin.create_user("gone@example.com").returncode == 0
    assert admin.create_user("kept@example.com").returncode == 0
    database = mongo[admin.database]
    user = database["users"].find_one({"email": "gone@example.com"})
    assert user is not None
    result = admin("delete-user", " Gone@Example.com ")
    assert result.returncode == 0, result.stderr
    assert database["users"].find_one({"_id": user["_id"]}) is None
    # As when the user deletes their account: their lists stay as tombstones for sync.
    default_list = database["lists"].find_one({"_id": user["_id"]})
    assert default_list is None or default_list.get("deleted_at") is not None
    assert database["users"].count_documents({}) == 1


def test_delete_user_of_an_unknown_email_fails_in_one_line(admin: Admin) -> None:
    result = admin("delete-user", "nobody@example.com")
    assert result.returncode == 1
    assert one_line(result) == "todo-service delete-user: no user with email 'nobody@example.com'"


def test_check_passes_on_a_database_the_service_set_up(admin: Admin) -> None:
    assert admin.create_user("ada@example.com").returncode == 0  # creates the indexes
    result = admin("check")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "ok   settings",
        "ok   database reachable",
        "ok   indexes present",
        "ok   replica set",
        "ok   change streams",
    ]


def test_check_fails_and_names_missing_indexes(
    admin: Admin, mongo: MongoClient[dict[str, Any]]
) -> None:
    assert admin.create_user("ada@example.com").returncode == 0
    mongo[admin.database]["todos"].drop_index("todos_list_sync")
    result = admin("check")
    assert result.returncode == 1
    assert "FAIL indexes present: missing: todos.todos_list_sync " in result.stdout
    assert one_line(result) == "todo-service check: check failed: indexes present"


def test_check_names_a_missing_tombstone_ttl_index(
    admin: Admin, mongo: MongoClient[dict[str, Any]]
) -> None:
    assert admin.create_user("ada@example.com").returncode == 0  # makes them, as `serve` does
    mongo[admin.database]["memberships"].drop_index("memberships_tombstone_ttl")
    result = admin("check")
    assert result.returncode == 1
    assert "missing: memberships.memberships_tombstone_ttl " in result.stdout


def test_check_names_a_tombstone_ttl_index_of_another_retention(admin: Admin) -> None:
    assert admin.create_user("ada@example.com").returncode == 0
    result = admin("check", TOMBSTONE_RETENTION_DAYS="2")
    assert result.returncode == 1
    assert "different: todos.todos_tombstone_ttl (expireAfterSeconds 2592000, " in result.stdout
    assert "lists.lists_tombstone_ttl" in result.stdout


def test_an_unreachable_database_fails_in_one_line(admin: Admin) -> None:
    result = admin(
        "list-users",
        MONGODB_URL=f"mongodb://127.0.0.1:{free_port()}",
        MONGODB_STARTUP_TIMEOUT="0.5",
        MONGODB_TIMEOUT_MS="200",
    )
    assert result.returncode == 1
    assert "MONGODB_STARTUP_TIMEOUT" in one_line(result)


# Every BSON type the service stores, and a few it might one day.
ODD_DOCUMENT = {
    "_id": ObjectId(),
    "when": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    "big": Int64(2**40),
    "money": Decimal128(Decimal("12.30")),
    "raw": Binary(b"\x00\x01\xff", 0x80),  # subtype 0 would read back as bytes
    "nested": {"list": [1, 2.5, None, 'text, "quoted"\nnewline']},
}


def test_dump_and_restore_reproduce_every_collection_document_and_index(
    admin: Admin, names: list[str], mongo: MongoClient[dict[str, Any]], tmp_path: Path
) -> None:
    assert admin.create_user("ada@example.com").returncode == 0
    source, target = mongo[names[0]], mongo[names[1]]
    source["todos"].insert_one(ODD_DOCUMENT)
    dumped = admin("dump", str(tmp_path / "backup"))
    assert dumped.returncode == 0, dumped.stderr
    # Password hashes and sessions: for the owner only.
    assert stat.S_IMODE((tmp_path / "backup").stat().st_mode) == 0o700
    assert {stat.S_IMODE(path.stat().st_mode) for path in (tmp_path / "backup").iterdir()} == {
        0o600
    }
    restored = admin("restore", str(tmp_path / "backup"), database=names[1])
    assert restored.returncode == 0, restored.stderr
    assert contents(target) == contents(source)
    assert index_names(target) == index_names(source)
    assert target["todos"].find_one({"_id": ODD_DOCUMENT["_id"]}) == ODD_DOCUMENT
    # A working service: the restored user is found and check passes.
    assert "ada@example.com" in admin("list-users", database=names[1]).stdout
    assert admin("check", database=names[1]).returncode == 0


def test_restore_refuses_a_database_with_documents_unless_forced(
    admin: Admin, names: list[str], mongo: MongoClient[dict[str, Any]], tmp_path: Path
) -> None:
    assert admin.create_user("ada@example.com").returncode == 0
    assert admin("dump", str(tmp_path / "backup")).returncode == 0
    assert admin.create_user("later@example.com").returncode == 0
    refused = admin("restore", str(tmp_path / "backup"))
    assert refused.returncode == 1
    assert "is not empty" in one_line(refused)
    assert "--force" in one_line(refused)
    assert mongo[names[0]]["users"].count_documents({}) == 2, "nothing was touched"
    forced = admin("restore", "--force", str(tmp_path / "backup"))
    assert forced.returncode == 0, forced.stderr
    assert [user["email"] for user in mongo[names[0]]["users"].find()] == ["ada@example.com"]


def test_dump_refuses_a_directory_that_is_not_empty(admin: Admin, tmp_path: Path) -> None:
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "keep.txt").write_text("mine")
    result = admin("dump", str(tmp_path / "backup"))
    assert result.returncode == 1
    assert "is not an empty directory" in one_line(result)


def test_restore_of_a_directory_without_a_dump_fails_in_one_line(
    admin: Admin, tmp_path: Path
) -> None:
    result = admin("restore", str(tmp_path))
    assert result.returncode == 1
    assert one_line(result) == f"todo-service restore: {tmp_path} is not a dump: no manifest.json"


def test_the_embedded_default_is_dumped_and_restored(tmp_path: Path) -> None:
    """Without MONGODB_URL each command starts (and stops) the embedded database in DATA_DIR."""

    def run(*argv: str, data_dir: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service", *argv],
            env=service_env(ENVIRONMENT="development", DATA_DIR=str(data_dir)),
            cwd=tmp_path,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first, second = tmp_path / "first", tmp_path / "second"
    created = run(
        "create-user", "--email", "ada@example.com", "--fname", "Ada", "--lname", "Admin",
        "--password-stdin", data_dir=first, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert run("dump", str(tmp_path / "backup"), data_dir=first).returncode == 0
    restored = run("restore", str(tmp_path / "backup"), data_dir=second)
    assert restored.returncode == 0, restored.stderr
    listed = run("list-users", data_dir=second)
    assert listed.stdout.split("\t")[1] == "ada@example.com"


# ---- export ----

# Text a CSV or JSON writer could get wrong: separators, quotes, line breaks, formulas, UTF-8.
AWKWARD = 'say "hi", then\nleave ✓'


async def exported_account(client: AsyncClient, alice: UserAccount, bob: UserAccount) -> None:
    """Alice's Inbox with awkward todos (and a deleted one), and Bob's list she can view."""
    await create_todo(client, alice, AWKWARD, notes="=SUM(A1)", tags=["a", "b"], due="2026-12-01")
    await create_todo(client, alice, "-1 plain", priority=2)
    gone = await create_todo(client, alice, "deleted")
    assert (await client.delete(f"/api/todos/{gone['id']}", headers=alice.headers)).is_success
    shared = await create_list(client, bob, "Bob's, shared")
    await share_list(client, bob, shared["id"], alice, "viewer")
    await create_todo(client, bob, "bob's todo", list_id=shared["id"])
    await create_todo(client, bob, "bob's private todo")


def without_date(export: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in export.items() if key != "exported_at"}


@pytest.mark.wire_only
async def test_export_json_is_what_get_api_export_gives(
    client: AsyncClient,
    alice: UserAccount,
    bob: UserAccount,
    database: MongoDatabase,
    wire_url: str,
    tmp_path: Path,
) -> None:
    await exported_account(client, alice, bob)
    admin = Admin(wire_url, database.name, tmp_path)
    result = await asyncio.to_thread(admin, "export", alice.email.upper())
    assert result.returncode == 0, result.stderr
    response = await client.get("/api/export", headers=alice.headers)
    assert response.status_code == 200
    expected = without_date(json.loads(response.content))
    assert without_date(json.loads(result.stdout)) == expected
    assert [len(each["todos"]) for each in expected["lists"]] == [2, 1]
    assert result.stderr == ""


@pytest.mark.wire_only
async def test_export_csv_to_a_file_is_what_get_api_export_gives(
    client: AsyncClient,
    alice: UserAccount,
    bob: UserAccount,
    database: MongoDatabase,
    wire_url: str,
    tmp_path: Path,
) -> None:
    await exported_account(client, alice, bob)
    admin = Admin(wire_url, database.name, tmp_path)
    output = tmp_path / "alice.csv"
    result = await asyncio.to_thread(
        admin, "export", alice.email, "--format", "csv", "--output", str(output)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"exported 3 todos of {alice.email} to {output}\n"
    response = await client.get("/api/export", params={"format": "csv"}, headers=alice.headers)
    assert output.read_bytes() == response.content
    left = await asyncio.to_thread(lambda: [path.name for path in tmp_path.iterdir()])
    assert left == ["alice.csv"], "no temporary file left"


@pytest.mark.wire_only
async def test_an_exported_json_imports_into_an_empty_account(
    client: AsyncClient,
    alice: UserAccount,
    bob: UserAccount,
    database: MongoDatabase,
    wire_url: str,
    tmp_path: Path,
) -> None:
    await exported_account(client, alice, bob)
    admin = Admin(wire_url, database.name, tmp_path)
    result = await asyncio.to_thread(admin, "export", alice.email)
    assert result.returncode == 0, result.stderr
    carol = await create_account(client)
    imported = await client.post(
        "/api/import",
        content=result.stdout.encode(),
        headers={**carol.headers, "Content-Type": "application/json"},
    )
    assert imported.status_code == 201, imported.text
    assert imported.json() == {"lists": 1, "todos": 3}  # the Inbox is filled, not created
    again = json.loads((await client.get("/api/export", headers=carol.headers)).content)
    shown = [
        (each["name"], [(t["text"], t["notes"], t["tags"]) for t in each["todos"]])
        for each in again["lists"]
    ]
    assert shown == [
        ("Inbox", [(AWKWARD, "=SUM(A1)", ["a", "b"]), ("-1 plain", "", [])]),
        ("Bob's, shared", [("bob's todo", "", [])]),
    ]


def test_export_of_an_unknown_email_fails_in_one_line(admin: Admin, tmp_path: Path) -> None:
    assert admin.create_user("ada@example.com").returncode == 0
    kept = tmp_path / "earlier.json"
    kept.write_text("an earlier export")
    result = admin("export", "nobody@example.com", "--output", str(kept))
    assert result.returncode == 1
    assert one_line(result) == "todo-service export: no user with email 'nobody@example.com'"
    assert kept.read_text() == "an earlier export", "a failed export replaces nothing"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["earlier.json"]


def test_export_in_another_format_is_a_usage_error(admin: Admin) -> None:
    result = admin("export", "ada@example.com", "--format", "xml")
    assert result.returncode == 2
    assert "invalid choice: 'xml'" in one_line(result)


def test_export_to_a_directory_fails_in_one_line(admin: Admin, tmp_path: Path) -> None:
    result = admin("export", "ada@example.com", "--output", str(tmp_path))
    assert result.returncode == 1
    assert one_line(result) == f"todo-service export: {tmp_path} is a directory"


# ---- damaged dumps, and restores at once ----


def admin_collections(database: Database[dict[str, Any]]) -> list[str]:
    return [name for name in database.list_collection_names() if name.startswith("_admin.")]


def drop_last_line(path: Path) -> None:
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))


def garble_first_line(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text('{"_id": {"$oid": "not an id"}\n' + "".join(lines[1:]))


def duplicate_first_line(path: Path) -> None:
    """Still a readable dump (the manifest counts the copy), but one the database refuses."""
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "".join(lines))
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["collections"][path.stem]["documents"] += 1
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (drop_last_line, "lists.jsonl holds 0 documents, the manifest says 1: the dump is damaged"),
        (garble_first_line, "lists.jsonl line 1: not Extended JSON"),
        (lambda path: path.unlink(), "is incomplete: lists.jsonl is missing"),
        (duplicate_first_line, "E11000"),
    ],
    ids=["truncated", "bad line", "missing file", "refused by the database"],
)
def test_a_damaged_dump_fails_in_one_line_and_changes_nothing(
    admin: Admin,
    mongo: MongoClient[dict[str, Any]],
    tmp_path: Path,
    damage: Any,
    message: str,
) -> None:
    assert admin.create_user("ada@example.com").returncode == 0
    assert admin("dump", str(tmp_path / "backup")).returncode == 0
    damage(tmp_path / "backup" / "lists.jsonl")
    assert admin.create_user("later@example.com").returncode == 0
    database = mongo[admin.database]
    before = contents(database)
    result = admin("restore", "--force", str(tmp_path / "backup"))
    assert result.returncode == 1
    assert message in one_line(result)
    assert contents(database) == before, "the database is as it was"
    assert admin_collections(database) == []


def test_a_refused_document_is_not_printed(admin: Admin, tmp_path: Path) -> None:
    assert admin.create_user("ada@example.com").returncode == 0
    assert admin("dump", str(tmp_path / "backup")).returncode == 0
    duplicate_first_line(tmp_path / "backup" / "users.jsonl")
    result = admin("restore", "--force", str(tmp_path / "backup"))
    assert result.returncode == 1
    line = one_line(result)
    assert "E11000" in line
    # The driver's error carries the refused document, password hash included.
    assert "argon2" not in line
    assert "ada@example.com" not in line


def test_a_restore_while_another_runs_fails_in_one_line_and_changes_nothing(
    admin: Admin, mongo: MongoClient[dict[str, Any]], tmp_path: Path
) -> None:
    assert admin.create_user("ada@example.com").returncode == 0
    assert admin("dump", str(tmp_path / "backup")).returncode == 0
    database = mongo[admin.database]
    # What a running restore holds (one insert decides which of two holds it).
    database[RESTORE_LOCK].insert_one({"_id": "restore", "pid": 4242, "host": "elsewhere"})
    before = contents(database)
    refused = admin("restore", "--force", str(tmp_path / "backup"))
    assert refused.returncode == 1
    line = one_line(refused)
    assert line.startswith(
        f"todo-service restore: another restore into '{admin.database}' is running "
        "(pid 4242 on elsewhere"
    )
    assert contents(database) == before
    database[RESTORE_LOCK].drop()
    restored = admin("restore", "--force", str(tmp_path / "backup"))
    assert restored.returncode == 0, restored.stderr
    assert admin_collections(database) == [], "the lock is released"


def test_dump_into_a_path_that_is_a_file_fails_in_one_line(admin: Admin, tmp_path: Path) -> None:
    (tmp_path / "backup").write_text("mine")
    result = admin("dump", str(tmp_path / "backup"))
    assert result.returncode == 1
    assert (
        one_line(result)
        == f"todo-service dump: {tmp_path / 'backup'} exists and is not an empty directory"
    )
    assert (tmp_path / "backup").read_text() == "mine"
