"""Peak Python memory of streaming GET /api/export, for lists of growing size.

Starts an in-memory SecantusDB, signs a user up through the app, puts N todos in their default
list (through todos.service.insert_todos, 1000 a round trip), then reads the export as a stream
with tracemalloc on and prints, per format, the file size, the peak of memory allocated while
streaming, and the time it took (the request's database budget applies: it must not run out):

    python -m bench.export_memory 1000 10000

The export reads todos a page (exports.PAGE_SIZE) at a time: the peak should stay about the
same whatever N, while the file grows with it.
"""

import argparse
import asyncio
import tempfile
import time
import tracemalloc
from pathlib import Path

from beanie import PydanticObjectId

from service.app import create_app
from service.config import Settings
from service.embedded import EmbeddedDatabase
from service.todos import service as todos
from tests.utils import app_client, create_account

BATCH = 1000


async def measure(url: str, sizes: list[int], data_dir: Path) -> None:
    for size in sizes:
        settings = Settings(
            _env_file=None,
            environment="development",  # type: ignore[arg-type]  # validated into Environment
            mongodb_url=url,
            mongodb_db=f"export_memory_{size}",
            auth_cache_max_staleness_ms=0,
            data_dir=data_dir,
        )
        async with app_client(create_app(settings)) as client:
            user = await create_account(client)
            owner = PydanticObjectId(user.id)
            for start in range(0, size, BATCH):
                batch = [
                    (PydanticObjectId(), {"text": f"todo {n} " + "x" * 80, "notes": "n" * 100})
                    for n in range(start, min(size, start + BATCH))
                ]
                await todos.insert_todos(list_id=owner, created_by=owner, todos=batch)
            for export_format in ("json", "csv"):
                tracemalloc.start()
                started = time.perf_counter()
                received = 0
                async with client.stream(
                    "GET", "/api/export", params={"format": export_format}, headers=user.headers
                ) as response:
                    assert response.status_code == 200, response.status_code
                    async for chunk in response.aiter_bytes():
                        received += len(chunk)
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                took = time.perf_counter() - started
                print(
                    f"| {size} | {export_format} | {received / 1e6:.1f} MB | "
                    f"{peak / 1e6:.1f} MB | {took:.2f} s |"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10000])
    args = parser.parse_args()
    print("| todos | format | file | peak allocated while streaming | time |")
    print("|---|---|---|---|---|")
    with (
        tempfile.TemporaryDirectory() as data_dir,
        EmbeddedDatabase(":memory:", sync_on_commit=False) as server,
    ):
        asyncio.run(measure(server.url, args.sizes, Path(data_dir)))


if __name__ == "__main__":
    main()
