"""What the admin commands of `python -m service` do: users, export, the health check, dump
and restore.

Each takes the service's Settings and works through the same code the API does: users are made
by accounts.service.sign_up and deleted by accounts.service.delete_user_by_email (everything of
theirs with them, as when they delete their account); a user's export is GET /api/export's
(transfer/exports.py) for the caller they would be. Dump and restore copy raw documents
(Canonical Extended JSON, one document a line, so that every BSON type survives and memory
stays flat) and each collection's indexes, whatever the models say.

Failures raise AdminError: __main__ prints its message as one line and exits with 1.
"""

import json
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pymongo
from beanie import Document, init_beanie
from beanie.odm.utils.typing import get_index_attributes
from bson import json_util
from bson.errors import BSONError
from pymongo import IndexModel
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError
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
    SETTING_INDEXES,
    MongoDatabase,
    create_client,
    ensure_setting_indexes,
    init_db,
    setting_index_expiry,
    supports_transactions,
    wait_for_database,
)
from service.errors import Conflict
from service.lists import service as lists
from service.transfer import exports
from service.transfer.schemas import ExportFormat

DUMP_FORMAT = "todo-service-dump"
DUMP_VERSION = 1
MANIFEST = "manifest.json"
INSERT_BATCH = 1000
# Options of a listed index that createIndexes refuses or sets itself.
_INDEX_SPEC_DROPPED = {"v", "ns"}
# The admin commands' own collections (never dumped, never the service's data): the lock a
# restore holds, and the collections it loads before they replace the real ones.
ADMIN_PREFIX = "_admin."
RESTORE_LOCK = ADMIN_PREFIX + "restore_lock"
STAGING_PREFIX = ADMIN_PREFIX + "restoring."


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


def _progress(console: Console, *, show: bool = True) -> Progress:
    """Bars on stderr; nothing when stderr is not a terminal (scripts, CI) or not `show`."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not (show and console.is_terminal),
    )


async def _ready(database: MongoDatabase, settings: Settings) -> None:
    """Bind the models and create every index the service would at startup: a database
    first set up by an admin command passes `check`."""
    await init_db(database)
    await ensure_setting_indexes(database, settings)


def _no_user(email: str) -> AdminError:
    return AdminError(f"no user with email {email.strip()!r}")


# ---- Users ----


async def create_user(database: MongoDatabase, settings: Settings, new: UserCreate) -> User:
    """Sign `new` up as the API's POST /api/users does (default list included)."""
    await _ready(database, settings)
    passwords = PasswordHasher(settings.password_hash_concurrency, queue=0)
    try:
        return await accounts.sign_up(new=new, passwords=passwords, now=utc_now())
    except Conflict as exc:
        raise AdminError(f"{new.email}: {exc.message}") from exc


async def delete_user(database: MongoDatabase, settings: Settings, email: str) -> None:
    """Delete the user and everything of theirs; AdminError if there is no such user."""
    await _ready(database, settings)
    if not await accounts.delete_user_by_email(email=email, now=utc_now()):
        raise _no_user(email)


async def list_users(database: MongoDatabase, settings: Settings) -> AsyncIterator[User]:
    """Every user, oldest first."""
    await _ready(database, settings)
    async for user in accounts.all_users():
        yield user


# ---- export ----


def check_output(path: Path) -> None:
    """Refuse an --output that can't become a file, before the database is asked anything."""
    if path.is_dir():
        raise AdminError(f"{path} is a directory")
    if not path.parent.is_dir():
        raise AdminError(f"{path.parent} is not a directory")


@contextmanager
def replaced_on_success(path: Path) -> Iterator[IO[bytes]]:
    """A file that becomes `path` (replacing it) only once the block ends without an error:
    a failed export leaves no half file, and an earlier one in place. Mode 0600, as
    tempfile makes it: an export is someone's data."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            yield out
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


async def export_user(
    database: MongoDatabase,
    settings: Settings,
    email: str,
    export_format: ExportFormat,
    out: IO[bytes],
    console: Console,
    *,
    show_progress: bool,
) -> int:
    """Write to `out` the bytes GET /api/export?format=... answers the user with this email
    (their lists and live todos: the same code, for the caller their request would be); the
    todos written. AdminError if there is no such user."""
    await _ready(database, settings)
    user = await accounts.find_user_by_email(email=email)
    if user is None:
        raise _no_user(email)
    caller = await lists.caller_of(user)
    exported = await exports.readable_lists(caller)
    written = 0
    with _progress(console, show=show_progress) as progress:
        task = progress.add_task(user.email, total=sum(each.todo_count for each in exported))

        def advance(todos: int) -> None:
            nonlocal written
            written += todos
            progress.advance(task, todos)

        batch_budget = settings.export_batch_db_budget_ms / 1000
        chunks = exports.chunks(exported, export_format, utc_now(), batch_budget, advance)
        async with aclosing(chunks):
            async for chunk in chunks:
                # StreamingResponse encodes str chunks as UTF-8: the same bytes.
                out.write(chunk.encode())
    out.flush()
    return written


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


async def _present_indexes(database: MongoDatabase, collection: str) -> dict[str, Any]:
    """The collection's indexes as listed, by name."""
    return {index["name"]: index async for index in await database[collection].list_indexes()}


def _keys(index: dict[str, Any] | None) -> list[tuple[str, Any]] | None:
    """An index's keys in order, 1 and -1 as ints (servers may list them as doubles)."""
    if index is None:
        return None
    return [(key, _direction(value)) for key, value in index["key"].items()]


def _other_keys(index: dict[str, Any]) -> str:
    keys = ", ".join(f"{key}: {value}" for key, value in _keys(index) or [])
    return f"keys {{{keys}}}: drop it and `serve` recreates it"


async def check_indexes(database: MongoDatabase, settings: Settings) -> tuple[list[str], list[str]]:
    """The indexes the service would create that are missing, and those present with other
    keys or another expiry than the settings give (each with what differs), as
    `collection.name`. The models must be bound."""
    missing: list[str] = []
    different: list[str] = []
    for model in DOCUMENT_MODELS:
        name = model.get_pymongo_collection().name
        present = await _present_indexes(database, name)
        # By name and keys in order (Beanie's own comparison leaves out every index with
        # `_id` among its keys, which several of ours have).
        for index_name, keys in expected_indexes(model).items():
            found = present.get(index_name)
            if found is None:
                missing.append(f"{name}.{index_name}")
            elif _keys(found) != [(key, _direction(value)) for key, value in keys]:
                different.append(f"{name}.{index_name} ({_other_keys(found)})")
    seconds = int(setting_index_expiry(settings).total_seconds())
    for ttl in SETTING_INDEXES:
        found = (await _present_indexes(database, ttl.collection)).get(ttl.name)
        if found is None:
            missing.append(f"{ttl.collection}.{ttl.name}")
        elif _keys(found) != [(ttl.field, 1)]:
            different.append(f"{ttl.collection}.{ttl.name} ({_other_keys(found)})")
        elif found.get("expireAfterSeconds") != seconds:
            different.append(
                f"{ttl.collection}.{ttl.name} (expireAfterSeconds "
                f"{found.get('expireAfterSeconds')}, TOMBSTONE_RETENTION_DAYS makes {seconds}: "
                "`serve` retunes it)"
            )
    return missing, different


async def check(database: MongoDatabase, settings: Settings) -> list[Finding]:
    """What `check` reports beyond the settings (which loaded, or we would not be here)."""
    findings = [Finding("database reachable", True, database.name)]
    # Bind the models without creating their indexes: check looks, it does not repair.
    await init_beanie(database=database, document_models=DOCUMENT_MODELS, skip_indexes=True)
    missing, different = await check_indexes(database, settings)
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(missing) + " (`serve` creates them)")
    if different:
        problems.append("different: " + ", ".join(different))
    findings.append(Finding("indexes present", not problems, "; ".join(problems) or "all"))
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
        findings.append(Finding("change streams", False, f"unavailable: {error_message(exc)}"))
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
    """The service's collections: neither the server's nor the admin commands' own."""
    names = await database.list_collection_names()
    return sorted(name for name in names if not name.startswith(("system.", ADMIN_PREFIX)))


def _write_atomically(path: Path, text: str) -> None:
    """`path` holds all of `text` or does not exist: the manifest, written last, is what
    makes a directory a dump, so an interrupted dump is never mistaken for one."""
    partial = path.with_name(path.name + ".part")
    with _private_file(partial) as out:
        out.write(text)
    partial.replace(path)


def _private_file(path: Path) -> IO[str]:
    """`path`, new, for writing text, readable and writable by its owner only (0600)."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    return os.fdopen(handle, "w", encoding="utf-8")


def error_message(exc: BaseException) -> str:
    """What went wrong, without what the driver attaches: a server error's full reply (the
    document it refused, a password hash included; cluster times) is not for the terminal."""
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors") or [{}]
        return str(errors[0].get("errmsg") or "a write was refused")
    if isinstance(exc, OperationFailure) and exc.details:
        return str(exc.details.get("errmsg") or exc)
    return str(exc)


PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600


async def dump(database: MongoDatabase, directory: Path, console: Console) -> dict[str, int]:
    """Write every collection of the database to `directory` (created; must be empty), each
    as `<name>.jsonl` with its indexes in manifest.json; the documents written per collection.

    Each collection is read as it is at the time (no snapshot across collections): stop the
    service, or accept a few seconds of skew, for a backup taken while it writes.
    """
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise AdminError(f"{directory} exists and is not an empty directory")
    # Owner only: a dump holds password hashes and sessions. mkdir's mode is masked by the
    # umask and leaves an existing empty directory as it was, so chmod after.
    directory.mkdir(mode=PRIVATE_DIRECTORY, parents=True, exist_ok=True)
    directory.chmod(PRIVATE_DIRECTORY)
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
            with _private_file(directory / f"{name}.jsonl") as out:
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
    _write_atomically(directory / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return counts


def _valid_collection_name(name: Any) -> bool:
    """A name a dump may hold: the service's kind, and a plain file name in the dump."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 120
        and not name.startswith(("system.", ADMIN_PREFIX, "."))
        and not any(character in name for character in "/\\$\0")
    )


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
    collections = manifest.get("collections")
    if not isinstance(collections, dict):
        raise AdminError(f"{path}: no `collections` object")
    for name, meta in collections.items():
        if not _valid_collection_name(name):
            raise AdminError(f"{path}: {name!r} is not a collection name a dump holds")
        if (
            not isinstance(meta, dict)
            or not isinstance(meta.get("documents"), int)
            or not isinstance(meta.get("indexes", []), list)
        ):
            raise AdminError(f"{path}: collection {name!r} has no document count or indexes")
    return manifest


def _documents(path: Path) -> Iterator[dict[str, Any]]:
    """The documents of a dump's file, in order; AdminError naming the line of one that is
    not a document in Canonical Extended JSON (a truncated or edited file)."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                document = json_util.loads(line, json_options=json_util.CANONICAL_JSON_OPTIONS)
            except (ValueError, TypeError, KeyError, BSONError) as exc:
                raise AdminError(f"{path} line {number}: not Extended JSON ({exc})") from exc
            if not isinstance(document, dict) or "_id" not in document:
                raise AdminError(f"{path} line {number}: not a document with an _id")
            yield document


def verify_dump(directory: Path, console: Console) -> dict[str, dict[str, Any]]:
    """The collections of the dump in `directory` once every file has been read through and
    holds what the manifest says (every line a document, as many as counted): a damaged
    dump fails here, before the database is touched."""
    manifest = read_manifest(directory)
    collections: dict[str, dict[str, Any]] = manifest["collections"]
    for name in collections:
        if not (directory / f"{name}.jsonl").is_file():
            raise AdminError(f"{directory} is incomplete: {name}.jsonl is missing")
    with _progress(console) as progress:
        for name, meta in collections.items():
            task = progress.add_task(f"reading {name}", total=meta["documents"])
            found = 0
            for _ in _documents(directory / f"{name}.jsonl"):
                found += 1
                progress.advance(task)
            if found != meta["documents"]:
                raise AdminError(
                    f"{directory / f'{name}.jsonl'} holds {found} documents, "
                    f"the manifest says {meta['documents']}: the dump is damaged"
                )
    return collections


@asynccontextmanager
async def _restore_lock(database: MongoDatabase) -> AsyncIterator[None]:
    """Held for the whole restore: a second restore into the same database (which would drop
    or mix into what the first is loading) fails at once. One insert decides who holds it."""
    lock = database[RESTORE_LOCK]
    holder = {"_id": "restore", "host": socket.gethostname(), "pid": os.getpid()}
    try:
        await lock.insert_one({**holder, "started_at": datetime.now(UTC)})
    except DuplicateKeyError as exc:
        other = await lock.find_one({"_id": "restore"}) or {}
        raise AdminError(
            f"another restore into {database.name!r} is running (pid {other.get('pid')} on "
            f"{other.get('host')}, since {other.get('started_at')}); if it is not, drop the "
            f"collection {RESTORE_LOCK!r} and its leftovers {STAGING_PREFIX + '*'!r}"
        ) from exc
    try:
        yield
    except BaseException:
        # Not in the way of the error that ended the restore (the database may be gone).
        with suppress(PyMongoError):
            await lock.drop()
        raise
    await lock.drop()


async def _drop_staging(database: MongoDatabase) -> None:
    for name in await database.list_collection_names():
        if name.startswith(STAGING_PREFIX):
            await database[name].drop()


async def restore(
    database: MongoDatabase, directory: Path, console: Console, *, force: bool
) -> dict[str, int]:
    """Load a dump into the database; refuses a database holding any document unless `force`,
    which replaces the dump's collections. The documents inserted per collection.

    Nothing of the database changes until every collection has loaded: the dump is read
    through first (verify_dump), each collection is loaded with its indexes into a staging
    collection, and only then does each staging collection replace its namesake
    (renameCollection with dropTarget, atomic per collection). A failure before that drops
    the staging collections and leaves the database as it was.
    """
    collections = verify_dump(directory, console)
    async with _restore_lock(database):
        if not force:
            for name in await _collection_names(database):
                if await database[name].find_one({}, projection={"_id": 1}) is not None:
                    raise AdminError(
                        f"database {database.name!r} is not empty ({name} has documents); "
                        "use --force to replace its collections"
                    )
        await _drop_staging(database)  # a restore killed earlier left them
        try:
            counts = await _load(database, directory, collections, console)
        except BaseException:
            with suppress(PyMongoError):
                await _drop_staging(database)
            raise
        admin = database.client.admin
        for name in collections:
            await admin.command(
                "renameCollection",
                f"{database.name}.{STAGING_PREFIX}{name}",
                to=f"{database.name}.{name}",
                dropTarget=True,
            )
    return counts


async def _load(
    database: MongoDatabase,
    directory: Path,
    collections: dict[str, dict[str, Any]],
    console: Console,
) -> dict[str, int]:
    """Each collection of the dump into its staging collection, with its indexes."""
    counts: dict[str, int] = {}
    with _progress(console) as progress:
        for name, meta in collections.items():
            staging = database[STAGING_PREFIX + name]
            # Created even when the dump's is empty: the rename needs a collection.
            await database.create_collection(staging.name)
            task = progress.add_task(name, total=meta["documents"])
            inserted = 0
            batch: list[dict[str, Any]] = []
            for document in _documents(directory / f"{name}.jsonl"):
                batch.append(document)
                if len(batch) == INSERT_BATCH:
                    inserted += await _insert(staging.insert_many, batch)
                    progress.advance(task, len(batch))
                    batch = []
            if batch:
                inserted += await _insert(staging.insert_many, batch)
                progress.advance(task, len(batch))
            # After the documents: one index build per index instead of one update per insert.
            specs = json_util.loads(
                json.dumps(meta.get("indexes", [])),
                json_options=json_util.CANONICAL_JSON_OPTIONS,
            )
            if specs:
                await database.command({"createIndexes": staging.name, "indexes": specs})
            counts[name] = inserted
    return counts


async def _insert(insert_many: Callable[..., Any], batch: list[dict[str, Any]]) -> int:
    result = await insert_many(batch, ordered=True)
    return len(result.inserted_ids)
