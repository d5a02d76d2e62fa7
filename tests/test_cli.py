"""`python -m service serve`: configuration errors, and the embedded database launcher."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from service import __main__ as cli
from service import embedded
from service.config import Settings, get_settings
from service.embedded import free_port

STARTUP_TIMEOUT = 60.0


_SETTING_NAMES = {name.upper() for name in Settings.model_fields}
# The checkout these tests belong to. Children run `-m service` from a temporary directory, so
# without it they would import whatever checkout the virtualenv's editable install points at.
CHECKOUT = str(Path(__file__).resolve().parents[1])


def service_env(**values: str) -> dict[str, str]:
    """The environment minus every setting, plus `values`; children import this checkout's
    `service` (PYTHONPATH first)."""
    env = {key: value for key, value in os.environ.items() if key not in _SETTING_NAMES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [CHECKOUT, env.get("PYTHONPATH")]))
    env.update(values)
    return env


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@contextmanager
def running_service(data_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m service serve` in development mode without MONGODB_URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port)],
        env=service_env(ENVIRONMENT="development", DATA_DIR=str(data_dir)),
        cwd=data_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert process.poll() is None, "the service exited during startup"
            try:
                if httpx.get(f"{base_url}/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service did not start in time"
            time.sleep(0.2)
        yield process, base_url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


def test_embedded_launcher_serves_keeps_data_and_stops_its_database(tmp_path: Path) -> None:
    credentials = {"username": "launcher@example.com", "password": "launcher password"}
    with running_service(tmp_path) as (process, base_url):
        [database_pid] = children_of(process.pid)
        assert is_running(database_pid)
        signup = httpx.post(
            f"{base_url}/api/users",
            json={
                "email": credentials["username"],
                "fname": "Launch",
                "lname": "Er",
                "password": credentials["password"],
            },
        )
        assert signup.status_code == 201
        assert stop(process) == 0
    assert not is_running(database_pid)
    assert (tmp_path / "db").is_dir()

    with running_service(tmp_path) as (process, base_url):
        login = httpx.post(f"{base_url}/api/token", data=credentials)
        assert login.status_code == 200, "data and the dev key survive a restart"
        me = httpx.get(
            f"{base_url}/api/me",
            headers={"Authorization": f"Bearer {login.json()['access_token']}"},
        )
        assert me.json()["email"] == credentials["username"]
        assert stop(process) == 0


def test_production_without_a_secret_key_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve"],
        env=service_env(ENVIRONMENT="production"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "SECRET_KEY" in lines[0]


def test_without_the_embedded_extra_or_mongodb_url_it_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in _SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(embedded, "find_executable", lambda: None)
    get_settings.cache_clear()
    try:
        assert cli.main(["serve", "--port", str(free_port())]) == 1
    finally:
        get_settings.cache_clear()
    [line] = capsys.readouterr().err.splitlines()
    assert '"CRITICAL"' in line
    assert "MONGODB_URL" in line
    assert "[embedded]" in line


def wait_until_gone(pid: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while is_running(pid):
        assert time.monotonic() < deadline, f"process {pid} still running"
        time.sleep(0.1)


def test_the_embedded_database_dies_with_a_killed_service(tmp_path: Path) -> None:
    with running_service(tmp_path) as (process, _):
        [database_pid] = children_of(process.pid)
        process.kill()  # SIGKILL: the service can't stop its database itself
        process.wait()
        wait_until_gone(database_pid)
    # Its data directory is free again: the next start serves.
    with running_service(tmp_path) as (process, _):
        assert stop(process) == 0


def test_a_second_service_on_the_same_data_dir_says_so_in_one_line(tmp_path: Path) -> None:
    with running_service(tmp_path) as (process, _):
        [database_pid] = children_of(process.pid)
        second = subprocess.run(
            [sys.executable, "-m", "service", "serve", "--port", str(free_port())],
            env=service_env(ENVIRONMENT="development", DATA_DIR=str(tmp_path)),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert is_running(database_pid), "the first one's database is left alone"
        assert stop(process) == 0
    assert second.returncode == 1
    [line] = second.stderr.splitlines()
    assert '"CRITICAL"' in line
    assert f"in use by process {database_pid}" in line
    assert "DATA_DIR" in line


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"]])
def test_help_needs_no_settings(tmp_path: Path, argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", *argv],
        env=service_env(ENVIRONMENT="production"),  # no SECRET_KEY: settings would fail
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: todo-service")
    assert "SECRET_KEY" not in result.stderr
    if argv[0] == "serve":
        assert "default: HOST, else 127.0.0.1" in result.stdout
        assert "default: PORT, else 8000" in result.stdout
