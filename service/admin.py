"""What the admin commands of `python -m service` do: users, the health check, dump and restore.

Each takes the service's Settings and works through the same code the API does: users are made
by accounts.service.sign_up and deleted by accounts.service.delete_user_by_email (everything of
theirs with them, as when they delete their account). Dump and restore copy raw documents
(Canonical Extended JSON, one document a line, so that every BSON type survives and memory
stays flat) and each collection's indexes, whatever the models say.

Failures raise AdminError: __main__ prints its message as one line and exits with 1.
"""

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymongo
from beanie import Document, init_beanie
from beanie.odm.utils.typing import get_index_attributes
from bson import json_util
from pymongo import IndexModel
from pymongo.errors import PyMongoError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from service.accounts import service as accounts
from service.accounts.models import User
from service.accounts.passwords import PasswordHasher
from service.accounts.schemas import UserCreate
from service.config import Settings
from service.core.clock import utc_now
from service.db import (
    DOCUMENT_MODELS,
    MongoDatabase,
    create_client,
    init_db,
    supports_transactions,
    wait_for_database,
)
from service.errors import Conflict

DUMP_FORMAT = "todo-service-dump"
DUMP_VERSION = 1
MANIFEST = "manifest.json"
INSERT_BATCH = 1000
# Options of a listed index that createIndexes refuses or sets itself.
_INDEX_SPEC_DROPPED = {"v", "ns"}


class AdminError(Exception):
    """An admin command failed; the message is the one line the user sees."""


@asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[MongoDatabase]:
    """The service's database (settings.mongodb_url must be set), once it answers."""
    client = create_client(settings)
    try:
        database = client[settings.mongodb_db]
        await wait_for_database(database, give_up_after=settings.mongodb_startup_timeout)
        yield database
    finally:
        await client.close()


def _progress(console: Console) -> Progress:
    """A bar per collection on stderr; nothing when stderr is not a terminal (scripts, CI)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


# ---- Users ----


async def create_user(database: MongoDatabase, settings: Settings, new: UserCreate) -> User:
    """Sign `new` up as the API's POST /api/users does (default list included)."""
    await init_db(database)
    passwords = PasswordHasher(settings.password_hash_concurrency, queue=0)
    try:
        return await accounts.sign_up(new=new, passwords=passwords, now=utc_now())
    except Conflict as exc:
        raise AdminError(f"{new.email}: {exc.message}") from exc


async def delete_user(database: MongoDatabase, email: str) -> None:
    """Delete the user and everything of theirs; AdminError if there is no such user."""
    await init_db(database)
    if not await accounts.delete_user_by_email(email=email, now=utc_now()):
        raise AdminError(f"no user with email {email.strip()!r}")


async def list_users(database: MongoDatabase) -> AsyncIterator[User]:
    """Every user, oldest first."""
    await init_db(database)
    async for user in accounts.all_users():
        yield user


# ---- check ----


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str


def expected_indexes(model: type[Document]) -> dict[str, list[tuple[str, Any]]]:
    """The indexes init_beanie creates for `model` (its Indexed fields, then Settings.indexes),
    by name: their keys in order.

    Beanie works these out inside its initialiser only; this repeats its rule (beanie 2.x,
    Initializer.init_indexes, without merge_indexes, which no model here sets) so that `check`
    can compare without creating anything.
    """
    indexes = [
        IndexModel([(field.alias or name, attrs[0])], **attrs[1])
        for name, field in model.model_fields.items()
        if (attrs := get_index_attributes(field)) is not None
    ]
    # Beanie keeps Settings.indexes as its IndexModelField wrappers, the IndexModel inside.
    indexes += [field.index for field in model.get_settings().indexes or []]
    return {index.document["name"]: list(index.document["key"].items()) for index in indexes}


async def check(database: MongoDatabase) -> list[Finding]:
    """What `check` reports beyond the settings (which loaded, or we would not be here)."""
    findings = [Finding("database reachable", True, database.name)]
    # Bind the models without creating their indexes: check looks, it does not repair.
    await init_beanie(database=database, document_models=DOCUMENT_MODELS, skip_indexes=True)
    missing: list[str] = []
    for model in DOCUMENT_MODELS:
        collection = model.get_pymongo_collection()
        # By name and keys in order (Beanie's own comparison leaves out every index with
        # `_id` among its keys, which several of ours have).
        present = {
            index["name"]: [(key, _direction(value)) for key, value in index["key"].items()]
            async for index in await collection.list_indexes()
        }
        for name, keys in expected_indexes(model).items():
            if present.get(name) != [(key, _direction(value)) for key, value in keys]:
                missing.append(f"{collection.name}.{name}")
    findings.append(
        Finding(
            "indexes present",
            not missing,
            "all" if not missing else "missing: " + ", ".join(missing) + " (`serve` creates them)",
        )
    )
    replica = await supports_transactions(database)
    findings.append(
        Finding(
            "replica set",
            True,  # informational: without one, multi-step writes use compensating steps
            "yes (transactions)" if replica else "no (standalone: no transactions)",
        )
    )
    try:
        with pymongo.timeout(5):
            stream = await database.watch()
            await stream.close()
    except PyMongoError as exc:
        findings.append(Finding("change streams", False, f"unavailable: {exc}"))
    else:
        findings.append(Finding("change streams", True, "available"))
    return findings


def _direction(value: Any) -> Any:
    """1 and -1 as ints: servers may list them as doubles."""
    return int(value) if isinstance(value, float) else value


# ---- dump and restore ----


def _index_specs(indexes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What createIndexes needs to rebuild `indexes` as listIndexes gave them (not _id's)."""
    return [
        {key: value for key, value in index.items() if key not in _INDEX_SPEC_DROPPED}
        for index in indexes
        if index["name"] != "_id_"
    ]


async def _collection_names(database: MongoDatabase) -> list[str]:
    names = await database.list_collection_names()
    return sorted(name for name in names if not name.startswith("system."))


async def dump(database: MongoDatabase, directory: Path, console: Console) -> dict[str, int]:
    """Write every collection of the database to `directory` (created; must be empty), each
    as `<name>.jsonl` with its indexes in manifest.json; the documents written per collection.

    Each collection is read as it is at the time (no snapshot across collections): stop the
    service, or accept a few seconds of skew, for a backup taken while it writes.
    """
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise AdminError(f"{directory} exists and is not an empty directory")
    directory.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "format": DUMP_FORMAT,
        "version": DUMP_VERSION,
        "database": database.name,
        "dumped_at": datetime.now(UTC).isoformat(),
        "collections": {},
    }
    counts: dict[str, int] = {}
    with _progress(console) as progress:
        for name in await _collection_names(database):
            collection = database[name]
            task = progress.add_task(name, total=await collection.estimated_document_count())
            written = 0
            with (directory / f"{name}.jsonl").open("w", encoding="utf-8") as out:
                async for document in collection.find({}, sort=[("_id", 1)]):
                    out.write(
                        json_util.dumps(document, json_options=json_util.CANONICAL_JSON_OPTIONS)
                    )
                    out.write("\n")
                    written += 1
                    progress.advance(task)
            indexes = [dict(index) async for index in await collection.list_indexes()]
            manifest["collections"][name] = {
                "documents": written,
                "indexes": json.loads(
                    json_util.dumps(
                        _index_specs(indexes), json_options=json_util.CANONICAL_JSON_OPTIONS
                    )
                ),
            }
            counts[name] = written
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return counts


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a dump; AdminError if `directory` holds none we can read."""
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AdminError(f"{directory} is not a dump: no {MANIFEST}") from exc
    except (OSError, ValueError) as exc:
        raise AdminError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != DUMP_FORMAT:
        raise AdminError(f"{path}: not a todo-service dump")
    if manifest.get("version") != DUMP_VERSION:
        raise AdminError(f"{path}: dump version {manifest.get('version')!r} is not supported")
    return manifest


@contextmanager
def _documents(path: Path) -> Iterator[Iterator[dict[str, Any]]]:
    with path.open(encoding="utf-8") as lines:
        yield (
            json_util.loads(line, json_options=json_util.CANONICAL_JSON_OPTIONS)
            for line in lines
            if line.strip()
        )


async def restore(
    database: MongoDatabase, directory: Path, console: Console, *, force: bool
) -> dict[str, int]:
    """Load a dump into the database; refuses a database holding any document unless `force`,
    which drops the dump's collections first. The documents inserted per collection."""
    manifest = read_manifest(directory)
    collections: dict[str, dict[str, Any]] = manifest["collections"]
    for name in collections:
        if not (directory / f"{name}.jsonl").is_file():
            raise AdminError(f"{directory} is incomplete: {name}.jsonl is missing")
    if not force:
        for name in await _collection_names(database):
            if await database[name].find_one({}, projection={"_id": 1}) is not None:
                raise AdminError(
                    f"database {database.name!r} is not empty ({name} has documents); "
                    "use --force to replace its collections"
                )
    counts: dict[str, int] = {}
    with _progress(console) as progress:
        for name, meta in collections.items():
            collection = database[name]
            if force:
                await collection.drop()
            task = progress.add_task(name, total=meta.get("documents"))
            inserted = 0
            with _documents(directory / f"{name}.jsonl") as documents:
                batch: list[dict[str, Any]] = []
                for document in documents:
                    batch.append(document)
                    if len(batch) == INSERT_BATCH:
                        inserted += await _insert(collection.insert_many, batch)
                        progress.advance(task, len(batch))
                        batch = []
                if batch:
                    inserted += await _insert(collection.insert_many, batch)
                    progress.advance(task, len(batch))
            # After the documents: one index build per index instead of one update per insert.
            specs = json_util.loads(
                json.dumps(meta.get("indexes", [])),
                json_options=json_util.CANONICAL_JSON_OPTIONS,
            )
            if specs:
                await database.command({"createIndexes": name, "indexes": specs})
            counts[name] = inserted
    return counts


async def _insert(insert_many: Callable[..., Any], batch: list[dict[str, Any]]) -> int:
    result = await insert_many(batch, ordered=True)
    return len(result.inserted_ids)
