"""Startup against an unreachable database: retries with backoff, then one clear failure."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import Settings
from service.db import DatabaseUnreachableError, create_client, wait_for_database
from service.embedded import free_port
from tests.conftest import TEST_SECRET_KEY


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def dead_settings(settings: Settings) -> Settings:
    url = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    return settings.model_copy(update={"mongodb_url": url})


async def test_startup_retries_with_backoff_then_gives_up(settings: Settings) -> None:
    fake = FakeTime()
    client = create_client(dead_settings(settings))
    try:
        with pytest.raises(DatabaseUnreachableError) as raised:
            await wait_for_database(
                client["test"],
                give_up_after=30,
                ping_timeout=0.05,
                clock=fake.clock,
                sleep=fake.sleep,
            )
    finally:
        await client.close()
    assert fake.sleeps[:5] == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert max(fake.sleeps) == 5.0
    assert sum(fake.sleeps) == pytest.approx(30)
    assert "MONGODB_STARTUP_TIMEOUT=30 s" in str(raised.value)


async def test_startup_returns_once_the_database_answers(wire_url: str, settings: Settings) -> None:
    fake = FakeTime()
    client = create_client(settings.model_copy(update={"mongodb_url": wire_url}))
    try:
        await wait_for_database(
            client["test"], give_up_after=30, clock=fake.clock, sleep=fake.sleep
        )
    finally:
        await client.close()
    assert fake.sleeps == []


def test_serve_exits_non_zero_with_one_clear_line(tmp_path: Path, settings: Settings) -> None:
    env = {
        **os.environ,
        "MONGODB_URL": dead_settings(settings).mongodb_url or "",
        "MONGODB_STARTUP_TIMEOUT": "1",
        "SECRET_KEY": TEST_SECRET_KEY,
        "ENVIRONMENT": "production",
        "DATA_DIR": str(tmp_path),
        "PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if '"CRITICAL"' in line]
    assert len(errors) == 1, result.stderr
    assert "MONGODB_STARTUP_TIMEOUT=1 s" in errors[0]
    assert "Traceback" not in result.stderr
