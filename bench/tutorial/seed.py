"""Seeding the tutorial stack the way bench/seed.py seeds the service.

One user and one todo are made through the API as templates, the rest are clones written
straight into the SQLite file, and every user logs in through `POST /api/token` (bench/seed.py's
`log_in`: the same form, the same password).
"""

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

from bench import seed


def _expect(status: int, expected: int, what: str, body: Any) -> None:
    if status != expected:
        raise seed.SeedError(f"tutorial {what}: HTTP {status}, expected {expected}: {body}")


def create_users(
    base_url: str, db_path: Path, *, prefix: str, count: int, deadline: float
) -> list[seed.Account]:
    """count users (one signed up through the API, the rest cloned), each logged in."""
    template_email = f"{prefix}0@bench.example.com"
    status, _, body = seed.http(
        base_url,
        "POST",
        "/api/users",
        json_body={"email": template_email, "password": seed.PASSWORD, "full_name": "Bench Mark"},
    )
    _expect(status, 201, "signup", body)
    accounts = [seed.Account(email=template_email, id=str(body["id"]))]
    with closing(sqlite3.connect(db_path)) as db, db:
        full_name, hashed, active = db.execute(
            "SELECT full_name, hashed_password, is_active FROM users WHERE id = ?", (body["id"],)
        ).fetchone()
        for n in range(1, count):
            email = f"{prefix}{n}@bench.example.com"
            cursor = db.execute(
                "INSERT INTO users (email, full_name, hashed_password, is_active) "
                "VALUES (?, ?, ?, ?)",
                (email, full_name, hashed, active),
            )
            accounts.append(seed.Account(email=email, id=str(cursor.lastrowid)))
    with ThreadPoolExecutor(max_workers=4) as pool:
        tokens = list(pool.map(lambda a: seed.log_in(base_url, a.email, deadline), accounts))
    for account, token in zip(accounts, tokens, strict=True):
        account.token = token
    return accounts


def give_todos(
    base_url: str, db_path: Path, owners: list[seed.Account], per_owner: int
) -> dict[str, int]:
    """A template todo through the API, then every owner topped up to per_owner todos."""
    status, _, body = seed.http(
        base_url,
        "POST",
        "/api/todos",
        json_body={"text": seed.TODO_TEXT.format(n=0)},
        token=owners[0].token,
    )
    _expect(status, 201, "create todo", body)
    owners[0].todo_ids.append(str(body["id"]))
    with closing(sqlite3.connect(db_path)) as db, db:
        completed, created_at = db.execute(
            "SELECT completed, created_at FROM todos WHERE id = ?", (body["id"],)
        ).fetchone()
        for owner in owners:
            for n in range(len(owner.todo_ids), per_owner):
                cursor = db.execute(
                    "INSERT INTO todos (text, completed, created_at, owner_id) VALUES (?, ?, ?, ?)",
                    (seed.TODO_TEXT.format(n=n), completed, created_at, int(owner.id)),
                )
                owner.todo_ids.append(str(cursor.lastrowid))
        todos = db.execute("SELECT count(*) FROM todos").fetchone()[0]
    return {"todos": int(todos)}


def seed_all(
    base_url: str, db_path: Path, *, readers: int, writers: int, todos_per_user: int
) -> tuple[list[seed.Account], list[seed.Account], dict[str, Any]]:
    """Readers with todos_per_user todos and writers, as bench.run's Bench.seed_data makes."""
    started = time.monotonic()
    deadline = started + 300
    reader_accounts = create_users(
        base_url, db_path, prefix="reader", count=readers, deadline=deadline
    )
    writer_accounts = create_users(
        base_url, db_path, prefix="writer", count=writers, deadline=deadline
    )
    counts = give_todos(base_url, db_path, reader_accounts, todos_per_user)
    info = {
        "readers": readers,
        "writers": writers,
        "todos_per_reader": todos_per_user,
        **counts,
        "seconds": round(time.monotonic() - started, 1),
    }
    return reader_accounts, writer_accounts, info
