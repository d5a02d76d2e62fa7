"""Command line: `python -m service serve [--host H] [--port P] [--workers N]`."""

import argparse
import logging
import os
import signal
import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from service.config import Settings, get_settings
from service.embedded import EmbeddedDatabase, EmbeddedDatabaseError

logger = logging.getLogger("service")


class _Terminated(Exception):
    """SIGTERM arrived before uvicorn took over signal handling."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def app_factory() -> FastAPI:
    """The app as uvicorn's workers build it: settings from the environment."""
    from service.main import create_app

    return create_app(get_settings())


def _parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="todo-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the API")
    serve.add_argument("--host", default=settings.host, help=f"default {settings.host}")
    serve.add_argument("--port", type=int, default=settings.port, help=f"default {settings.port}")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    return parser


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
            logger.info("embedded database ready at %s", embedded.url)
        uvicorn.run(
            "service.__main__:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=settings.log_level.lower(),
            # The service decides client addresses itself; uvicorn would otherwise trust
            # X-Forwarded-For from 127.0.0.1.
            proxy_headers=False,
            server_header=False,
        )
    finally:
        if embedded is not None:
            embedded.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m service` and the `todo-service` script."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        messages = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        sys.exit(f"todo-service: invalid configuration: {messages}")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = _parser(settings).parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        serve(settings, args.host, args.port, args.workers)
    except EmbeddedDatabaseError as exc:
        sys.exit(f"todo-service: {exc}")
    except (KeyboardInterrupt, _Terminated):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
