"""Import files are parsed in a worker thread, a bounded number at once.

Parsing and validating a file of IMPORT_MAX_TODOS todos takes ~110 ms (5000 short todos,
1.7 MB) to ~390 ms (16 MB) with pydantic (bench/import_cost.py): on the event loop that would
stall every other request of the worker for as long. In a thread the loop keeps running (it
gets the interpreter back every few milliseconds); at most PARSE_CONCURRENCY files are parsed
at once per worker, PARSE_QUEUE more wait, and one more is refused at once (503 ImportsBusy)
rather than holding its body in memory behind a queue of others (core/threads.py, as password
hashing does).
"""

from collections.abc import Callable

from service.config import Settings
from service.core.threads import BoundedThreads
from service.errors import ImportsBusy
from service.transfer import service
from service.transfer.schemas import ImportFile

# One parse at a time leaves the other core of a small host to the event loop and database.
PARSE_CONCURRENCY = 1
PARSE_QUEUE = 8


class ImportParser(BoundedThreads):
    """Parses import files off the event loop: `concurrency` at once, `queue` waiting."""

    def __init__(self, concurrency: int = PARSE_CONCURRENCY, queue: int = PARSE_QUEUE) -> None:
        super().__init__(concurrency, queue, ImportsBusy)

    async def parse(
        self,
        raw: bytes,
        settings: Settings,
        read: Callable[[bytes, Settings], ImportFile] | None = None,
    ) -> ImportFile:
        """The file as `read` makes it (an export by default; a Todoist CSV's reader too), in a
        worker thread; ImportInvalid if it isn't valid within the limits, ImportsBusy if the
        worker takes no more now."""
        # Looked up here, not as the default: a test may replace service.validate_import.
        return await self.run(read or service.validate_import, raw, settings)
