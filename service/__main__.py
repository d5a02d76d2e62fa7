"""Command line: `python -m service serve [--host H] [--port P] [--workers N]`, and the admin
commands: create-user, delete-user EMAIL, list-users, export EMAIL, check, dump DIR,
restore DIR [--force]. Exit status: 0 done, 1 failed (one line on stderr), 2 usage."""

import argparse
import asyncio
import atexit
import getpass
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError
from pymongo.errors import PyMongoError
from rich.console import Console

from service import admin
from service.accounts.schemas import UserCreate, UserPublic
from service.config import Settings, get_settings
from service.core.http_limits import PROTOCOL as HTTP_PROTOCOL
from service.core.logs import configure_logging
from service.db import DatabaseUnreachableError, MongoDatabase, create_client, wait_for_database
from service.embedded import EmbeddedDatabase, EmbeddedDatabaseError
from service.transfer.schemas import ExportFormat

logger = logging.getLogger("service")


def app_factory() -> FastAPI:
    """The app as uvicorn's workers build it: settings from the environment."""
    from service.app import create_app

    settings = get_settings()
    # Workers are fresh processes: each sets up its own JSON logging.
    configure_logging(settings.log_level)
    return create_app(settings)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line (its default prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    """The command line. Needs no settings (`--help` works without SECRET_KEY): the defaults
    shown are the Settings field defaults, and HOST/PORT are applied after parsing."""
    fields = Settings.model_fields
    host, port = fields["host"].default, fields["port"].default
    parser = _Parser(prog="todo-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the API")
    serve.add_argument("--host", help=f"default: HOST, else {host}")
    serve.add_argument("--port", type=int, help=f"default: PORT, else {port}")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    _admin_commands(commands)
    return parser


_DATABASE_NOTE = (
    "Uses the service's settings (MONGODB_URL, MONGODB_DB, ...); without MONGODB_URL, the "
    "embedded database in DATA_DIR (stop `serve` first: it holds that directory)."
)


def _admin_commands(commands: "argparse._SubParsersAction[_Parser]") -> None:
    def add(name: str, summary: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=f"{summary}. {_DATABASE_NOTE}")

    create = add("create-user", "create a user (and their default list), as signing up does")
    create.add_argument("--email", required=True)
    create.add_argument("--fname", required=True, help="first name")
    create.add_argument("--lname", required=True, help="last name")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (else it is asked for twice)",
    )
    delete = add("delete-user", "delete a user and everything of theirs")
    delete.add_argument("email", metavar="EMAIL")
    users = add("list-users", "list the users, oldest first: id, email, names, created_at")
    users.add_argument("--json", action="store_true", help="one JSON object a line")
    export = add(
        "export",
        "write everything the user with this email can read, as GET /api/export gives it "
        "to them (JSON: what POST /api/import reads)",
    )
    export.add_argument("email", metavar="EMAIL")
    export.add_argument(
        "--format",
        choices=[each.value for each in ExportFormat],
        default=ExportFormat.JSON.value,
        help="default: json",
    )
    export.add_argument(
        "--output",
        metavar="FILE",
        type=Path,
        help="write to FILE (replaced only once the export is complete) instead of stdout",
    )
    add(
        "check",
        "check the settings, that the database answers, the indexes, whether it is a replica "
        "set, and that change streams work",
    )
    dump = add("dump", "copy every collection and its indexes into DIR (new or empty)")
    dump.add_argument("directory", metavar="DIR", type=Path)
    restore = add("restore", "load a dump made by `dump` into the database")
    restore.add_argument("directory", metavar="DIR", type=Path)
    restore.add_argument(
        "--force",
        action="store_true",
        help="restore into a database holding documents: the dump's collections are replaced",
    )


async def wait_until_reachable(settings: Settings) -> None:
    """Block until settings.mongodb_url answers (see db.wait_for_database)."""
    client = create_client(settings)
    try:
        await wait_for_database(
            client[settings.mongodb_db], give_up_after=settings.mongodb_startup_timeout
        )
    finally:
        await client.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How `serve` runs uvicorn, beyond the app, address and workers (bench/floor.py runs the
    bare FastAPI app it compares us with under the same options)."""
    return {
        "log_level": settings.log_level.lower(),
        # Logging is set up by configure_logging (JSON); the request middleware logs each
        # request, so uvicorn's access log would be a second, plainer copy.
        "log_config": None,
        "access_log": False,
        # On SIGTERM: stop accepting, let in-flight requests finish, then cancel what is still
        # running (long-lived streams) after this grace period, then the lifespan closes the
        # database client.
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
        # The service decides client addresses itself; uvicorn would otherwise trust
        # X-Forwarded-For from 127.0.0.1.
        "proxy_headers": False,
        "server_header": False,
        # Request heads bounded in size (431 past 16 KiB) and time (HEADER_TIMEOUT_SECONDS).
        "http": HTTP_PROTOCOL,
    }


@contextmanager
def on_a_database(settings: Settings) -> Iterator[Settings]:
    """`settings` for the block; without MONGODB_URL, pointed at the embedded database,
    started in DATA_DIR/db for the block and stopped after (`serve` and the admin commands)."""
    if settings.mongodb_url is not None:
        yield settings
        return
    embedded = EmbeddedDatabase(settings.data_dir.resolve() / "db")
    try:
        embedded.start()
        yield settings.model_copy(update={"mongodb_url": embedded.url})
    finally:
        embedded.stop()


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Run uvicorn; without MONGODB_URL, first start the embedded database and stop it after."""
    embedded = settings.mongodb_url is None
    with on_a_database(settings) as settings:
        if embedded and settings.mongodb_url is not None:
            # Workers are separate processes that read their settings from the environment.
            os.environ["MONGODB_URL"] = settings.mongodb_url
            get_settings.cache_clear()
            logger.info("embedded database ready at %s", settings.mongodb_url)
        # Checked here, before any worker starts, so that an unreachable database ends in one
        # clear log line and a non-zero exit instead of a traceback per worker.
        asyncio.run(wait_until_reachable(settings))
        if workers > 1 and settings.metrics_on:
            _use_multiprocess_metrics()
        uvicorn.run(
            "service.__main__:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            **uvicorn_options(settings),
        )


def _use_multiprocess_metrics() -> None:
    """Point prometheus-client's multiprocess mode at a fresh directory the workers share."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    directory = tempfile.mkdtemp(prefix="todo-service-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    atexit.register(shutil.rmtree, directory, ignore_errors=True)


def _read_password(from_stdin: bool) -> str:
    """The new user's password: stdin's first line, or asked twice on the terminal."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask the password on: use --password-stdin")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != password:
        raise admin.AdminError("the passwords differ")
    return password


class UsageError(Exception):
    """A command line that makes no sense (exit status 2, as argparse's own)."""


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())


async def _run_admin(args: argparse.Namespace, settings: Settings) -> None:
    """One admin command on the database of `settings` (its URL set)."""
    console = Console(stderr=True)
    if args.command == "create-user":
        try:
            new = UserCreate(
                email=args.email,
                fname=args.fname,
                lname=args.lname,
                password=_read_password(args.password_stdin),
            )
        except ValidationError as exc:
            raise UsageError(_validation_message(exc)) from exc
    if args.command == "export" and args.output is not None:
        admin.check_output(args.output)  # before waiting on the database
    async with admin.connected(settings) as database:
        if args.command == "create-user":
            user = await admin.create_user(database, settings, new)
            print(f"created {user.email} ({user.id})")  # noqa: T201 -- the CLI's output
        elif args.command == "delete-user":
            await admin.delete_user(database, settings, args.email)
            print(f"deleted {args.email.strip()} and everything of theirs")  # noqa: T201
        elif args.command == "list-users":
            async for user in admin.list_users(database, settings):
                public = UserPublic.from_document(user)
                if args.json:
                    print(public.model_dump_json())  # noqa: T201
                else:
                    print(  # noqa: T201
                        f"{public.id}\t{public.email}\t{public.fname}\t{public.lname}\t"
                        f"{public.created_at.isoformat()}"
                    )
        elif args.command == "export":
            await _export(args, database, settings, console)
        elif args.command == "check":
            findings = [admin.Finding("settings", True, f"database {settings.mongodb_db!r}")]
            findings += await admin.check(database, settings)
            for finding in findings:
                mark = "ok  " if finding.ok else "FAIL"
                print(f"{mark} {finding.name}: {finding.detail}")  # noqa: T201
            if failed := [f.name for f in findings if not f.ok]:
                raise admin.AdminError("check failed: " + ", ".join(failed))
        elif args.command == "dump":
            counts = await admin.dump(database, args.directory, console)
            print(  # noqa: T201
                f"dumped {sum(counts.values())} documents of {len(counts)} collections "
                f"to {args.directory}"
            )
        elif args.command == "restore":
            counts = await admin.restore(database, args.directory, console, force=args.force)
            print(  # noqa: T201
                f"restored {sum(counts.values())} documents of {len(counts)} collections "
                f"from {args.directory}"
            )


async def _export(
    args: argparse.Namespace, database: MongoDatabase, settings: Settings, console: Console
) -> None:
    """`export`: to stdout, or to --output with a progress bar (stdout may be the terminal)."""
    export_format = ExportFormat(args.format)
    if args.output is None:
        await admin.export_user(
            database, settings, args.email, export_format, sys.stdout.buffer, console,
            show_progress=False,
        )  # fmt: skip
        return
    with admin.replaced_on_success(args.output) as out:
        written = await admin.export_user(
            database, settings, args.email, export_format, out, console, show_progress=True
        )
    print(f"exported {written} todos of {args.email.strip()} to {args.output}")  # noqa: T201


def admin_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run an admin command, on the embedded database when MONGODB_URL is unset."""
    try:
        with on_a_database(settings) as database_settings:
            asyncio.run(_run_admin(args, database_settings))
    except UsageError as exc:
        print(f"todo-service {args.command}: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except (
        admin.AdminError,
        EmbeddedDatabaseError,
        DatabaseUnreachableError,
        PyMongoError,
        OSError,
    ) as exc:
        message = " ".join(admin.error_message(exc).split())  # one line, whatever the driver said
        print(f"todo-service {args.command}: {message}", file=sys.stderr)  # noqa: T201
        return 1
    except KeyboardInterrupt:
        return 1
    except Exception as exc:  # still one line: the exception's type says where to look
        print(  # noqa: T201
            f"todo-service {args.command}: unexpected {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m service` and the `todo-service` script."""
    args = _parser().parse_args(argv)  # before the settings: `--help` needs none
    try:
        settings = get_settings()
    except ValidationError as exc:
        messages = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        sys.exit(f"todo-service: invalid configuration: {messages}")
    if args.command != "serve":
        # Only problems are worth a log line here; the output is the command's own.
        configure_logging("WARNING")
        return admin_command(args, settings)
    configure_logging(settings.log_level)
    # SIGTERM stops like Ctrl-C (KeyboardInterrupt) whenever uvicorn isn't handling it: before
    # uvicorn starts (the embedded database is stopped on the way out), and after, when uvicorn
    # raises the signal again once it has shut down.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    host = settings.host if args.host is None else args.host
    port = settings.port if args.port is None else args.port
    try:
        serve(settings, host, port, args.workers)
    except (EmbeddedDatabaseError, DatabaseUnreachableError) as exc:
        logger.critical("%s", exc)  # one clear line, no traceback
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
