"""Make mongomock-motor look like pymongo's async API, which Beanie 2.x is written against.

mongomock-motor imitates *Motor*; Beanie >= 2.0 drives ``pymongo.AsyncMongoClient``. The two
APIs differ in a handful of places that Beanie (or our own code) touches; each override below
closes exactly one such gap. Everything else falls through to mongomock-motor unchanged.

Usage::

    db = mock_database("test")
    await init_beanie(database=db, document_models=[...])
    ...
    await db.client.close()

Where mongomock lacks a feature a standalone (non-replica-set) MongoDB server also lacks, it
answers as that server does, so the service takes the same path on both: ``watch()`` fails
with the server's error (no change streams: the live feed is unavailable), and ``hello``
reports no replica set (no transactions).

Aggregation stages (in ``aggregate()`` and in pipeline updates): ``$unset`` is added, and
``$set``/``$addFields`` evaluate the elements of an array as MongoDB does.

Known mock-only limits (not shimmed): sessions/transactions, ``$text``,
``$lookup`` with ``let``/``pipeline`` (so Beanie ``fetch_links`` over Link fields), other
aggregation stages mongomock lacks, ``Database.aggregate``/``list_collections`` (still
Motor-style), ``Collection.with_options`` (returns a sync mongomock collection), timeseries.
"""

from typing import Any, cast

from mongomock import aggregate as _aggregate
from mongomock.collection import BulkOperationBuilder
from mongomock.command_cursor import CommandCursor
from mongomock_motor import (
    AsyncCommandCursor,
    AsyncCursor,
    AsyncMongoMockClient,
    AsyncMongoMockCollection,
    AsyncMongoMockDatabase,
)
from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure
from pymongo.results import BulkWriteResult

__all__ = ["mock_client", "mock_database"]

_Doc = dict[str, Any]

# mongomock-motor's stubs declare its classes to *be* Motor's classes, whose signatures are
# exactly what we are replacing (sync ``aggregate``, sync ``close``, ...), and mongomock itself
# is untyped. Typing them as ``Any`` avoids a wall of ``[override]``/``[no-untyped-call]``
# ignores; the public functions below are typed as the pymongo async classes, which is the API
# these objects now follow.
_ClientBase: Any = AsyncMongoMockClient
_DatabaseBase: Any = AsyncMongoMockDatabase
_CollectionBase: Any = AsyncMongoMockCollection
_CursorBase: Any = AsyncCursor
_CommandCursorBase: Any = AsyncCommandCursor
_BulkBuilderBase: Any = BulkOperationBuilder
_MockCommandCursor: Any = CommandCursor

# What a standalone mongod answers to a change stream.
NO_CHANGE_STREAMS: _Doc = {
    "ok": 0.0,
    "errmsg": "The $changeStream stage is only supported on replica sets",
    "code": 40573,
    "codeName": "Location40573",
}
# ... and to `hello`: a writable primary, without the `setName` of a replica set member.
STANDALONE_HELLO: _Doc = {
    "isWritablePrimary": True,
    "maxBsonObjectSize": 16 * 1024 * 1024,
    "maxMessageSizeBytes": 48_000_000,
    "maxWriteBatchSize": 100_000,
    "minWireVersion": 0,
    "maxWireVersion": 21,
    "readOnly": False,
    "ok": 1.0,
}


class _ToListMixin:
    # mongomock-motor's ``to_list`` ignores ``length`` and drains the cursor; pymongo returns at
    # most ``length`` documents (Beanie forwards ``FindMany.to_list(length)`` here).
    async def to_list(self, length: int | None = None) -> list[_Doc]:
        if length is not None and length < 1:
            raise ValueError("to_list() length must be greater than 0")
        docs: list[_Doc] = []
        async for doc in cast(Any, self):
            docs.append(doc)
            if len(docs) == length:
                break
        return docs


class _Cursor(_ToListMixin, _CursorBase):  # type: ignore[misc]
    pass


class _CommandCursor(_ToListMixin, _CommandCursorBase):  # type: ignore[misc]
    pass


class _BulkBuilder(_BulkBuilderBase):  # type: ignore[misc]
    # pymongo >= 4.11 passes ``sort=`` to add_update/add_replace (UpdateOne/ReplaceOne.sort);
    # mongomock 4.3 does not accept the keyword, so every Beanie bulk UpdateOne/ReplaceOne failed.
    def add_update(self, *args: Any, sort: Any = None, **kwargs: Any) -> None:
        if sort is not None:
            raise NotImplementedError("mongomock: bulk UpdateOne(sort=...) is not supported")
        super().add_update(*args, **kwargs)

    def add_replace(self, *args: Any, sort: Any = None, **kwargs: Any) -> None:
        if sort is not None:
            raise NotImplementedError("mongomock: bulk ReplaceOne(sort=...) is not supported")
        super().add_replace(*args, **kwargs)


class _Collection(_CollectionBase):  # type: ignore[misc]
    def __init__(self, database: "_Database", collection: Any) -> None:
        super().__init__(database, collection)
        # The base keeps the (patched, same object) mongomock collection name-mangled.
        self._sync = collection

    # pymongo's find() is sync but its cursor must honour to_list(length); see _ToListMixin.
    def find(self, *args: Any, **kwargs: Any) -> _Cursor:
        return _Cursor(self._sync.find(*args, **kwargs))

    # pymongo async: ``await coll.aggregate(...)`` yields a cursor (Motor returns the cursor
    # directly). Beanie awaits it for aggregate(), fetch_links queries and count/distinct.
    async def aggregate(self, pipeline: list[_Doc], *args: Any, **kwargs: Any) -> _CommandCursor:
        return _CommandCursor(self._sync.aggregate(pipeline, *args, **kwargs))

    # mongomock's create_indexes stores IndexModel keys as ``dict_items`` (so index_information()
    # reports dict_items, not pymongo's list of pairs, and a same-named create_index([...]) then
    # fails as "already exists with different options") and drops options such as
    # partialFilterExpression. Beanie creates every Indexed()/Settings.indexes index through here.
    async def create_indexes(
        self, indexes: list[IndexModel], session: Any = None, comment: Any = None, **_: Any
    ) -> list[str]:
        names: list[str] = []
        for index in indexes:
            options = dict(index.document)
            key = list(options.pop("key").items())
            names.append(self._sync.create_index(key, session=session, **options))
        return names

    # Same coroutine-returns-cursor difference as aggregate().
    async def list_indexes(self, *args: Any, **kwargs: Any) -> _CommandCursor:
        return _CommandCursor(_MockCommandCursor(list(self._sync.list_indexes(*args, **kwargs))))

    # Beanie's BulkWriter always passes ``comment=`` (mongomock's bulk_write has no such
    # parameter) and needs _BulkBuilder; otherwise this mirrors mongomock's bulk_write.
    async def bulk_write(
        self,
        requests: list[Any],
        ordered: bool = True,
        bypass_document_validation: bool | None = None,
        session: Any = None,
        comment: Any = None,
        let: Any = None,
    ) -> BulkWriteResult:
        if bypass_document_validation or session is not None or let is not None:
            raise NotImplementedError("mongomock: bulk_write option not supported")
        bulk = _BulkBuilder(self._sync, ordered=ordered)
        for request in requests:
            request._add_to_bulk(bulk)
        return BulkWriteResult(bulk.execute(), True)

    # mongomock has no change streams (mongomock-motor even resolves ``watch`` to a
    # sub-collection): fail as a standalone server does.
    async def watch(self, *args: Any, **kwargs: Any) -> Any:
        raise OperationFailure(
            NO_CHANGE_STREAMS["errmsg"], code=NO_CHANGE_STREAMS["code"], details=NO_CHANGE_STREAMS
        )


class _Database(_DatabaseBase):  # type: ignore[misc]
    # The base builds plain mongomock-motor collections; db[name] / db.name go through here.
    def get_collection(self, *args: Any, **kwargs: Any) -> _Collection:
        return _Collection(self, self.delegate.get_collection(*args, **kwargs))

    # pymongo's signature is (session, filter, comment, **kwargs) and Beanie's init_beanie
    # passes authorizedCollections=/nameOnly=, which mongomock rejects. They only matter for
    # auth/performance on a real server, so drop them.
    async def list_collection_names(
        self, session: Any = None, filter: _Doc | None = None, comment: Any = None, **_: Any
    ) -> list[str]:
        names: list[str] = self.delegate.list_collection_names(filter=filter, session=session)
        return names

    # A database-wide change stream (the access stream, service/core/watch.py): none either.
    async def watch(self, *args: Any, **kwargs: Any) -> Any:
        raise OperationFailure(
            NO_CHANGE_STREAMS["errmsg"], code=NO_CHANGE_STREAMS["code"], details=NO_CHANGE_STREAMS
        )

    # mongomock implements neither ``hello`` nor ``isMaster``.
    async def command(self, command: str | _Doc, *args: Any, **kwargs: Any) -> _Doc:
        name = command if isinstance(command, str) else next(iter(command))
        if name in {"hello", "isMaster", "ismaster"}:
            return dict(STANDALONE_HELLO)
        answer: _Doc = await super().command(command, *args, **kwargs)
        return answer


# No append_metadata() shim: init_beanie only calls it if callable, and mongomock-motor resolves
# the unknown attribute to a (non-callable) database, so Beanie skips it.
class _Client(_ClientBase):  # type: ignore[misc]
    def get_database(self, *args: Any, **kwargs: Any) -> _Database:
        plain = super().get_database(*args, **kwargs)
        return _Database(self, plain.delegate)

    # pymongo async: ``await client.close()``; mongomock's close() is a sync no-op.
    async def close(self) -> None:
        return None


# Aggregation stages, in `aggregate()` and in updates with a pipeline. Mongomock's handlers are
# module-level functions in a table, so they are replaced there (once, at import).
_add_fields_stage: Any = _aggregate._handle_add_fields_stage
_project_stage: Any = _aggregate._handle_project_stage
_parse_expression: Any = _aggregate._parse_expression


def _set_stage(documents: list[_Doc], database: Any, options: _Doc) -> list[_Doc]:
    """`$set`/`$addFields` where a value is an array: MongoDB evaluates its elements as
    expressions (`["$owner_id"]` is an array holding the owner id); mongomock stores the
    array as written."""
    arrays = {field: value for field, value in options.items() if isinstance(value, list)}
    if any("." in field for field in arrays):
        raise NotImplementedError("mongomock shim: an array set into an embedded field")
    others = {field: value for field, value in options.items() if field not in arrays}
    out: list[_Doc] = (
        _add_fields_stage(documents, database, others)
        if others
        else [dict(document) for document in documents]
    )
    for document, changed in zip(documents, out, strict=True):
        for field, items in arrays.items():
            changed[field] = [_parse_expression(item, document) for item in items]
    return out


def _unset_stage(documents: list[_Doc], database: Any, fields: str | list[str]) -> list[_Doc]:
    """`$unset` (mongomock has none): what MongoDB defines it as, a `$project` excluding the
    fields."""
    names = [fields] if isinstance(fields, str) else fields
    out: list[_Doc] = _project_stage(documents, database, dict.fromkeys(names, 0))
    return out


_aggregate._PIPELINE_HANDLERS.update(
    {"$set": _set_stage, "$addFields": _set_stage, "$unset": _unset_stage}
)


def mock_client() -> AsyncMongoClient[_Doc]:
    """A fresh, isolated in-memory client (no data shared with other calls); like the service's
    own client, it reads datetimes back timezone-aware (UTC)."""
    return cast(AsyncMongoClient[_Doc], _Client(tz_aware=True))


def mock_database(name: str = "test") -> AsyncDatabase[_Doc]:
    """A database on a fresh :func:`mock_client`; pass it to ``init_beanie(database=...)``."""
    return mock_client()[name]
