"""The embedded default database: SecantusDB run as a child process (never imported).

SecantusDB is GPL-2.0 and an optional extra, so the service only ever talks to it over the
MongoDB wire protocol, like any other server.
"""

import fcntl
import logging
import os
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


# Run by the child between the service and SecantusDB, then replaced by it (exec keeps the
# setting): the kernel sends SIGTERM to the database when the service dies, even by SIGKILL.
# Done in a launcher rather than a preexec_fn, which is unsafe once the parent has threads.
# PR_SET_PDEATHSIG follows the *thread* that started the child: start() runs on the main one.
_DIE_WITH_PARENT = """\
import ctypes, os, signal, sys
PR_SET_PDEATHSIG = 1
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
    sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: errno {ctypes.get_errno()}")
if os.getppid() != int(sys.argv[1]):
    sys.exit("the service exited before its embedded database started")
os.execv(sys.argv[2], sys.argv[2:])
"""
# WiredTiger holds an fcntl lock on this file of its directory while it runs.
WIREDTIGER_LOCK = "WiredTiger.lock"


class EmbeddedDatabaseError(RuntimeError):
    """The embedded database could not be found or started."""


def lock_holder(storage_path: Path) -> int | None:
    """Whether a running process has WiredTiger's lock on `storage_path`: its pid (0 if it
    can't be told), or None if the directory is free. A lock can't outlive its process, so
    the file a killed database leaves behind doesn't count."""
    lock = storage_path / WIREDTIGER_LOCK
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return _posix_lock_owner(os.fstat(fd).st_ino)
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _posix_lock_owner(inode: int) -> int:
    """The pid holding a POSIX lock on the file with this inode (Linux's /proc/locks), or 0."""
    try:
        table = Path("/proc/locks").read_text(encoding="ascii")
    except OSError:
        return 0
    for line in table.splitlines():
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 4242 fd:01:1311830 0 EOF"
        if len(fields) > 5 and fields[1] == "POSIX" and fields[5].endswith(f":{inode}"):
            return int(fields[4])
    return 0


def in_use_message(storage_path: Path, pid: int) -> str:
    holder = f"process {pid}" if pid else "another process"
    stop = f"stop it (kill {pid})" if pid else "stop it"
    return (
        f"the embedded database directory {storage_path} is in use by {holder}: another "
        f"`make run` or `todo-service serve`, or a database it left running. Either {stop}, "
        "or set DATA_DIR to another directory."
    )


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
            storage = Path(self.storage_path)
            if (holder := lock_holder(storage)) is not None:
                raise EmbeddedDatabaseError(in_use_message(storage.resolve(), holder))
            storage.mkdir(parents=True, exist_ok=True)
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
        if sys.platform == "linux":
            command = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *command]
        # Its own session: Ctrl-C reaches only the service, which stops the database after
        # the last request has finished. If the service dies first, so does the database.
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
