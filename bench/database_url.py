"""The database a benchmark runs against: MONGODB_URL, or an in-memory embedded SecantusDB."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

from service.embedded import EmbeddedDatabase


@contextmanager
def database_url() -> Iterator[str]:
    """MONGODB_URL if set; otherwise start SecantusDB in memory for the run and stop it after."""
    if url := os.environ.get("MONGODB_URL"):
        yield url
        return
    with EmbeddedDatabase(":memory:", sync_on_commit=False) as server:
        yield server.url
