"""The admin commands of `python -m service`, run as an administrator runs them: a child
process against the wire tier's server (each test on a database of its own), or the embedded
default. Exit status 0 done, 1 failed, 2 usage; errors are one line on stderr."""

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
from pymongo import MongoClient
from pymongo.database import Database

from service.embedded import free_port
from tests.test_cli import service_env

PASSWORD = "admin cli password"
# The children import this checkout's `service`, not the one the virtualenv installed (an
# editable install may point at another checkout).
CHECKOUT = str(Path(__file__).resolve().parents[1])


def admin_env(**values: str) -> dict[str, str]:
    return service_env(PYTHONPATH=CHECKOUT, **values)


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
            env=admin_env(**values),
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


@pytest.mark.parametrize(
    "command", ["create-user", "delete-user", "list-users", "check", "dump", "restore"]
)
def test_each_admin_command_has_help_that_needs_no_settings(tmp_path: Path, command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", command, "--help"],
        env=admin_env(ENVIRONMENT="production"),  # no SECRET_KEY: settings would fail
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
    assert "EMAIL" in result.stderr


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
            env=admin_env(ENVIRONMENT="development", DATA_DIR=str(data_dir)),
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
