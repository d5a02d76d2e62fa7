"""Fuzzing the service with schemathesis, driven by its own OpenAPI schema.

The service runs for real (`python -m service serve` on the wire tier); schemathesis generates
valid and invalid requests for every operation in /openapi.json, sends them authenticated as a
real user (signed up and logged in through the API), and applies all of its checks. Nothing
here is endpoint-specific, so routes added later are fuzzed too.
"""

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from service.config import Settings
from service.embedded import free_port
from service.main import create_app
from tests.conftest import TEST_SECRET_KEY
from tests.utils import wait_until_serving

# Examples per operation and generation mode: enough to find what's wrong, small enough for CI.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "40"))

calls = {"total": 0, "failed": 0}


@pytest.fixture(scope="module")
def live_server(wire_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service as deployed: its own process, its own database, docs on for the schema."""
    port = free_port()
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    env = {
        **os.environ,
        "MONGODB_URL": wire_url,
        "MONGODB_DB": f"fuzz_{uuid.uuid4().hex[:12]}",
        "SECRET_KEY": TEST_SECRET_KEY,
        "ENVIRONMENT": "production",
        "DOCS_ENABLED": "true",
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
    }
    base_url = f"http://127.0.0.1:{port}"
    with subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port)],
        env=env,
        cwd=data_dir,
    ) as process:
        try:
            wait_until_serving(base_url, process)
            yield base_url
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def http_session() -> Iterator[Any]:
    """One HTTP session for all calls, closed at the end (no sockets left to the GC)."""
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def auth_headers(live_server: str) -> dict[str, str]:
    """A real user's bearer token, from signing up and logging in through the API."""
    email = f"fuzzer-{uuid.uuid4().hex[:8]}@example.com"
    password = "fuzzing password 123"
    signup = httpx.post(
        f"{live_server}/api/users",
        json={"email": email, "fname": "Fuzz", "lname": "Er", "password": password},
    )
    assert signup.status_code == 201, signup.text
    login = httpx.post(f"{live_server}/api/token", data={"username": email, "password": password})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _schema() -> Any:
    """The OpenAPI schema of the app exactly as the live server builds it (same code, same
    settings), loaded at collection time so that pytest gets one test per operation."""
    app = create_app(
        Settings(
            _env_file=None,
            secret_key=TEST_SECRET_KEY,  # type: ignore[arg-type]  # validated into SecretStr
            docs_enabled=True,
        )
    )
    loaded = schemathesis.openapi.from_dict(app.openapi())
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES
    )
    return loaded


@pytest.fixture(scope="module", autouse=True)
def _report_calls(pytestconfig: pytest.Config) -> Iterator[None]:
    yield
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                f"\nschemathesis: {calls['total']} generated calls, {calls['failed']} failed"
            )


schema = _schema()


@schema.parametrize()  # type: ignore[untyped-decorator]  # schemathesis is untyped here
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(
    case: Any, live_server: str, auth_headers: dict[str, str], http_session: Any
) -> None:
    calls["total"] += 1
    try:
        case.call_and_validate(base_url=live_server, headers=auth_headers, session=http_session)
    except BaseException:  # schemathesis' FailureGroup is a BaseExceptionGroup
        calls["failed"] += 1
        raise
