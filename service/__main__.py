"""Command line: `python -m service serve [--host H] [--port P] [--workers N]`."""

import argparse
import asyncio
import atexit
import logging
import os
import shutil
import signal
import sys
import tempfile
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from service.config import Settings, get_settings
from service.core.http_limits import PROTOCOL as HTTP_PROTOCOL
from service.core.logs import configure_logging
from service.db import DatabaseUnreachableError, create_client, wait_for_database
from service.embedded import EmbeddedDatabase, EmbeddedDatabaseError

logger = logging.getLogger("service")


def app_factory() -> FastAPI:
    """The app as uvicorn's workers build it: settings from the environment."""
    from service.app import create_app

    settings = get_settings()
    # Workers are fresh processes: each sets up its own JSON logging.
    configure_logging(settings.log_level)
    return create_app(settings)


def _parser() -> argparse.ArgumentParser:
    """The command line. Needs no settings (`--help` works without SECRET_KEY): the defaults
    shown are the Settings field defaults, and HOST/PORT are applied after parsing."""
    fields = Settings.model_fields
    host, port = fields["host"].default, fields["port"].default
    parser = argparse.ArgumentParser(prog="todo-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the API")
    serve.add_argument("--host", help=f"default: HOST, else {host}")
    serve.add_argument("--port", type=int, help=f"default: PORT, else {port}")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    return parser


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


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Run uvicorn; without MONGODB_URL, first start the embedded database and stop it after."""
    embedded: EmbeddedDatabase | None = None
    if settings.mongodb_url is None:
        embedded = EmbeddedDatabase(settings.data_dir.resolve() / "db")
    try:
        if embedded is not None:
            embedded.start()
            # Workers are separate processes that read their settings from the environment.
            os.environ["MONGODB_URL"] = embedded.url
            get_settings.cache_clear()
            settings = settings.model_copy(update={"mongodb_url": embedded.url})
            logger.info("embedded database ready at %s", embedded.url)
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
    finally:
        if embedded is not None:
            embedded.stop()


def _use_multiprocess_metrics() -> None:
    """Point prometheus-client's multiprocess mode at a fresh directory the workers share."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    directory = tempfile.mkdtemp(prefix="todo-service-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    atexit.register(shutil.rmtree, directory, ignore_errors=True)


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
