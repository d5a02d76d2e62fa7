"""The embedded default database: SecantusDB run as a child process (never imported).

SecantusDB is GPL-2.0 and an optional extra, so the service only ever talks to it over the
MongoDB wire protocol, like any other server.
"""

import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pymongo import MongoClient
from pymongo.errors import PyMongoError

logger = logging.getLogger(__name__)

EXECUTABLE = "secantusd-py"
NOT_INSTALLED = (
    "MONGODB_URL is not set and the embedded database is not installed. Either install it "
    "(pip install '.[embedded]', or run `make run`) or set MONGODB_URL to a MongoDB server, "
    "e.g. MONGODB_URL=mongodb://localhost:27017."
)


class EmbeddedDatabaseError(RuntimeError):
    """The embedded database could not be found or started."""


def find_executable() -> str | None:
    """secantusd-py from this interpreter's environment, else from PATH."""
    beside = Path(sys.executable).parent / EXECUTABLE
    return str(beside) if beside.exists() else shutil.which(EXECUTABLE)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedDatabase:
    """Starts SecantusDB on a free loopback port, waits for `ping`, stops it on exit."""

    def __init__(
        self,
        storage_path: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        sync_on_commit: bool = True,
        startup_timeout: float = 60.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.storage_path = storage_path
        self.host = host
        self.port = port or free_port(host)
        self.sync_on_commit = sync_on_commit
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Launch the server and block until it answers ping (or raise)."""
        executable = find_executable()
        if executable is None:
            raise EmbeddedDatabaseError(NOT_INSTALLED)
        if str(self.storage_path) != ":memory:":
            Path(self.storage_path).mkdir(parents=True, exist_ok=True)
        command = [
            executable,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--storage-path",
            str(self.storage_path),
            "--log-level",
            "WARNING",
        ]
        if self.sync_on_commit:
            command.append("--sync-on-commit")
        command.extend(self.extra_args)
        logger.info(
            "starting embedded SecantusDB on %s:%d (%s)", self.host, self.port, self.storage_path
        )
        # Its own session: Ctrl-C reaches only the service, which stops the database after
        # the last request has finished.
        self._process = subprocess.Popen(  # noqa: S603 -- fixed argv, no shell
            command, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        client: MongoClient[dict[str, Any]] = MongoClient(self.url, serverSelectionTimeoutMS=500)
        with client:
            while True:
                assert self._process is not None  # noqa: S101 -- set by start()
                if self._process.poll() is not None:
                    raise EmbeddedDatabaseError(
                        f"embedded SecantusDB exited with code {self._process.returncode}"
                    )
                try:
                    client.admin.command("ping")
                except PyMongoError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise EmbeddedDatabaseError(
                            f"embedded SecantusDB did not answer within {self.startup_timeout} s"
                        ) from None
                    time.sleep(0.1)
                else:
                    return

    def kill(self) -> None:
        """Kill the server with SIGKILL: no chance to flush anything (for durability tests)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the server to stop (SIGTERM), and kill it if it won't."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("embedded SecantusDB did not stop in %s s: killing it", timeout)
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
