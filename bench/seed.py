"""Seeding: a few requests through the API, then bulk inserts straight into the database.

Users (with their default lists) and todos are cloned from a *template* made through the API
(one signup, one todo) and read back raw, so the bulk documents have exactly the shape the
service writes, whatever fields the models gain.
"""

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.database import Database

PASSWORD = "bench password 123"
TODO_TEXT = "Benchmark todo number {n:06d}, a realistic short line of text"
LOGIN_RETRIES = 20


class SeedError(RuntimeError):
    """The service refused a seeding request."""


def http(
    base_url: str,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    form: dict[str, str] | None = None,
    token: str | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], Any]:
    """One request with the standard library: (status, headers, decoded JSON body or None)."""
    headers: dict[str, str] = {}
    data: bytes | None = None
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base_url + path, data=data, headers=headers, method=method)  # noqa: S310 -- loopback URL built by the bench
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            raw = response.read()
            status, response_headers = response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        raw, status, response_headers = error.read(), error.code, dict(error.headers)
    body = json.loads(raw) if raw else None
    return status, response_headers, body


@dataclass
class Account:
    email: str
    id: str
    token: str = ""
    todo_ids: list[str] = field(default_factory=list)


def _expect(status: int, expected: int, what: str, body: Any) -> None:
    if status != expected:
        raise SeedError(f"{what}: HTTP {status}, expected {expected}: {body}")


def sign_up_template(base_url: str, email: str) -> str:
    status, _, body = http(
        base_url,
        "POST",
        "/api/users",
        json_body={"email": email, "fname": "Bench", "lname": "Mark", "password": PASSWORD},
    )
    _expect(status, 201, "signup", body)
    return str(body["id"])


def log_in(base_url: str, email: str, deadline: float) -> str:
    """An access token for email; waits out a 429 (login throttling) until the deadline."""
    for _ in range(LOGIN_RETRIES):
        status, headers, body = http(
            base_url, "POST", "/api/token", form={"username": email, "password": PASSWORD}
        )
        if status == 200:
            return str(body["access_token"])
        if status == 429 and time.monotonic() < deadline:
            time.sleep(min(float(headers.get("Retry-After", "1")), 10.0))
            continue
        break
    raise SeedError(f"login of {email}: HTTP {status}: {body}")


def create_users(
    base_url: str, db: Database[dict[str, Any]], *, prefix: str, count: int, deadline: float
) -> list[Account]:
    """count users (one signed up through the API, the rest cloned), each logged in."""
    template_email = f"{prefix}0@bench.example.com"
    template_id = sign_up_template(base_url, template_email)
    template = db.users.find_one({"_id": ObjectId(template_id)})
    # Signup made the user's default list (its id is the user's) and their owner membership.
    template_list = db.lists.find_one({"_id": ObjectId(template_id)})
    template_membership = db.memberships.find_one({"user_id": ObjectId(template_id)})
    if template is None or template_list is None or template_membership is None:
        raise SeedError("the signed-up template user (or its default list) is not in the database")
    accounts = [Account(email=template_email, id=template_id)]
    clones: list[dict[str, Any]] = []
    lists: list[dict[str, Any]] = []
    memberships: list[dict[str, Any]] = []
    for n in range(1, count):
        email = f"{prefix}{n}@bench.example.com"
        clone = {**template, "_id": ObjectId(), "email": email}
        clones.append(clone)
        lists.append({**template_list, "_id": clone["_id"], "owner_id": clone["_id"]})
        memberships.append(
            {
                **template_membership,
                "_id": ObjectId(),
                "list_id": clone["_id"],
                "user_id": clone["_id"],
            }
        )
        accounts.append(Account(email=email, id=str(clone["_id"])))
    if clones:
        db.users.insert_many(clones, ordered=False)
        db.lists.insert_many(lists, ordered=False)
        db.memberships.insert_many(memberships, ordered=False)
    # Logins are hash-bound; the service runs a few at once, so a few threads keep it busy.
    with ThreadPoolExecutor(max_workers=4) as pool:
        tokens = list(pool.map(lambda a: log_in(base_url, a.email, deadline), accounts))
    for account, token in zip(accounts, tokens, strict=True):
        account.token = token
    return accounts


def todo_template(base_url: str, db: Database[dict[str, Any]], owner: Account) -> dict[str, Any]:
    """One todo created through the API, read back raw."""
    status, _, body = http(
        base_url,
        "POST",
        "/api/todos",
        json_body={"text": TODO_TEXT.format(n=0)},
        token=owner.token,
    )
    _expect(status, 201, "create todo", body)
    template = db.todos.find_one({"_id": ObjectId(body["id"])})
    if template is None:
        raise SeedError("the created template todo is not in the database")
    owner.todo_ids.append(str(template["_id"]))
    return template


def _clone_todos(template: dict[str, Any], owner_id: ObjectId, count: int) -> list[dict[str, Any]]:
    """`count` todos of the owner's default list (whose id is the owner's)."""
    return [
        {
            **template,
            "_id": ObjectId(),
            "list_id": owner_id,
            "created_by": owner_id,
            "sync_lists": [owner_id],
            "text": TODO_TEXT.format(n=n),
        }
        for n in range(count)
    ]


def give_todos(
    db: Database[dict[str, Any]],
    template: dict[str, Any],
    owners: list[Account],
    per_owner: int,
    batch: int = 5000,
) -> None:
    """Top every owner up to per_owner todos with bulk inserts (and their default lists'
    todo counts, as creates would); records their ids."""
    pending: list[dict[str, Any]] = []
    counts: list[UpdateOne] = []
    for owner in owners:
        docs = _clone_todos(template, ObjectId(owner.id), per_owner - len(owner.todo_ids))
        owner.todo_ids.extend(str(doc["_id"]) for doc in docs)
        pending.extend(docs)
        counts.append(UpdateOne({"_id": ObjectId(owner.id)}, {"$inc": {"todo_count": len(docs)}}))
    for start in range(0, len(pending), batch):
        db.todos.insert_many(pending[start : start + batch], ordered=False)
    if counts:
        db.lists.bulk_write(counts, ordered=False)


@dataclass(frozen=True)
class FillResult:
    total: int
    inserted: int
    seconds: float
    complete: bool

    @property
    def docs_per_s(self) -> float:
        return self.inserted / self.seconds if self.seconds else 0.0


def fill_collection(
    db: Database[dict[str, Any]],
    template: dict[str, Any],
    *,
    total: int,
    per_owner: int,
    budget_s: float,
    batch: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> FillResult:
    """Add todos of made-up owners (per_owner each) until the collection holds `total`.

    Stops early, with complete=False, when the time budget runs out.
    """
    started = time.monotonic()
    count = db.todos.estimated_document_count()
    inserted = 0
    while count < total:
        if time.monotonic() - started > budget_s:
            break
        size = min(batch, total - count)
        docs: list[dict[str, Any]] = []
        while len(docs) < size:
            docs.extend(_clone_todos(template, ObjectId(), min(per_owner, size - len(docs))))
        db.todos.insert_many(docs, ordered=False)
        count += size
        inserted += size
        if progress is not None:
            progress(count)
    return FillResult(
        total=db.todos.estimated_document_count(),
        inserted=inserted,
        seconds=time.monotonic() - started,
        complete=count >= total,
    )
