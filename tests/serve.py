"""`python -m service`, with the tests' cheap Argon2id parameters (tests/utils.py).

For the servers whose tests sign up and log in many times but test neither hashing nor the
command line: the fuzzer's and the event streams'. Everything else is the real thing: the same
CLI, settings from the environment, uvicorn, its own process. (With --workers, uvicorn's worker
processes would import the service anew, with production's hashing.)
"""

import os
import sys
from pathlib import Path

from service.__main__ import main
from tests.utils import TEST_HASHING

ROOT = Path(__file__).resolve().parents[1]


def command(*args: str) -> list[str]:
    """`python -m tests.serve ARGS`: `python -m service ARGS` with the tests' hashing."""
    return [sys.executable, "-m", "tests.serve", *args]


def environment(env: dict[str, str]) -> dict[str, str]:
    """`env`, plus the path that lets the child import `tests` from any directory."""
    path = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": path}


if __name__ == "__main__":
    for module, name, value in TEST_HASHING:
        setattr(module, name, value)
    sys.exit(main())
