"""Time of POST /api/import on SecantusDB: one transaction against compensating writes.

Starts an in-memory SecantusDB (a replica set to the driver: it has transactions), signs a
user up per run and imports a file of N todos (one new list, text ~80 and notes 100
characters) through the app, once per path, REPEAT times each, and prints the status and the
times (min / median). The compensating path is forced by telling the import the server has no
transactions. It also times `ImportFile.model_validate_json` on the file alone, and on a file of
IMPORT_MAX_TODOS todos at the largest size IMPORT_MAX_BYTES allows:

    python -m bench.import_cost 1000 5000

REQUEST_DB_BUDGET_MS is the default (2 s) unless `--budget-ms` says: a path that needs more
answers 503.
"""

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app
from service.config import Settings
from service.core import transactions
from service.embedded import EmbeddedDatabase
from service.transfer.schemas import ImportFile
from tests.utils import app_client, create_account

REPEAT = 3


def import_body(size: int, text: str = "x" * 80, notes: str = "n" * 100) -> bytes:
    """An export file of one list with `size` todos, as GET /api/export writes them."""
    todo = {
        "id": "6560f0c2a1b2c3d4e5f60718",
        "created_by": "6560f0c2a1b2c3d4e5f60719",
        "text": text,
        "notes": notes,
        "completed": False,
        "completed_at": None,
        "due": "2026-12-01T09:00:00+02:00",
        "priority": 2,
        "tags": ["home", "errand"],
        "created_at": "2026-12-01T09:00:00.123000Z",
        "updated_at": "2026-12-01T09:00:00.123000Z",
        "version": 3,
    }
    body = {"version": 1, "lists": [{"name": "Imported", "role": "owner", "todos": [todo] * size}]}
    return json.dumps(body, ensure_ascii=False).encode()


def parse_ms(raw: bytes) -> float:
    best = float("inf")
    for _ in range(REPEAT):
        started = time.perf_counter()
        ImportFile.model_validate_json(raw)
        best = min(best, time.perf_counter() - started)
    return best * 1000


async def measure(url: str, sizes: list[int], data_dir: Path, budget_ms: int) -> None:
    settings = Settings(
        _env_file=None,
        environment="development",  # type: ignore[arg-type]  # validated into Environment
        mongodb_url=url,
        mongodb_db="import_cost",
        data_dir=data_dir,
        max_lists_per_user=1000,
        import_max_todos=100_000,
        max_todos_per_list=1_000_000,
        import_max_bytes=64 * 1024 * 1024,
        request_db_budget_ms=budget_ms,
    )
    async with app_client(create_app(settings)) as client:
        for size in sizes:
            raw = import_body(size)
            for path in ("transaction", "compensating"):
                times = []
                statuses = set()
                with pytest.MonkeyPatch.context() as patch:
                    if path == "compensating":

                        async def standalone(_: Any) -> bool:
                            return False

                        patch.setattr(transactions, "supports_transactions", standalone)
                    for _ in range(REPEAT):
                        user = await create_account(client)
                        headers = {**user.headers, "Content-Type": "application/json"}
                        started = time.perf_counter()
                        response = await client.post("/api/import", content=raw, headers=headers)
                        times.append(time.perf_counter() - started)
                        statuses.add(response.status_code)
                print(
                    f"| {size} | {len(raw) / 1e6:.2f} MB | {path} | {sorted(statuses)} | "
                    f"{min(times):.2f} s | {statistics.median(times):.2f} s |"
                )
            print(f"parse of {size} todos ({len(raw) / 1e6:.2f} MB): {parse_ms(raw):.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 5000])
    parser.add_argument(
        "--budget-ms", type=int, default=Settings.model_fields["request_db_budget_ms"].default
    )
    args = parser.parse_args()
    print("| todos | file | path | status | min | median |")
    print("|---|---|---|---|---|---|")
    with (
        tempfile.TemporaryDirectory() as data_dir,
        EmbeddedDatabase(":memory:", sync_on_commit=False) as server,
    ):
        asyncio.run(measure(server.url, args.sizes, Path(data_dir), args.budget_ms))
    largest = import_body(5000, text="t" * 1000, notes="n" * 2000)
    print(
        f"parse of 5000 todos of 3.3 KB ({len(largest) / 1e6:.2f} MB): {parse_ms(largest):.0f} ms"
    )


if __name__ == "__main__":
    main()
