"""Fuzzing the service with schemathesis, driven by its own OpenAPI schema.

The service runs for real (`python -m service serve` on the wire tier); schemathesis generates
valid and invalid requests for every operation in /openapi.json and applies all of its checks.
Every operation that needs a token gets a live one: its own user, signed up and logged in
through the API, logged in again (or replaced by a new user) as soon as a call ends its session
(logout, a password change, deleting the account or the session). The status codes each
operation answered are counted, and the run fails if an authenticated operation answered only
401: a fuzzer whose token died would otherwise pass while testing nothing. Nothing here is
endpoint-specific, so routes added later are fuzzed (and kept authenticated) too.
"""

import os
import subprocess
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.config import OperationConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.app import create_app
from service.config import Settings
from service.embedded import free_port
from tests import serve
from tests.conftest import TEST_SECRET_KEY
from tests.utils import wait_until_serving

# Examples per operation and generation mode: enough to find what's wrong, small enough for CI.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "40"))
# Seconds any one call may take; an event stream is read up to its first event (`ready`).
REQUEST_TIMEOUT = 10
# Body types that are a string in a grammar JSON Schema can't state (a Todoist CSV for POST
# /api/import): a generated string is almost never one, so its 422 is by design and
# positive_data_acceptance can't apply; every other check (no 5xx, documented statuses and
# bodies) still does.
GRAMMAR_BODIES = {"text/csv"}

# One worker runs the whole module: the final check reads what the fuzzing tests counted.
pytestmark = pytest.mark.xdist_group("schemathesis")

calls = {"total": 0, "failed": 0}
# Status codes answered, per operation ("GET /api/todos") and to its own method, for the final
# check.
statuses: defaultdict[str, Counter[int]] = defaultdict(Counter)


@pytest.fixture(scope="module")
def live_server(wire_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service as deployed (with the tests' cheap hashing: tests/serve.py): its own
    process, its own database, docs on for the schema."""
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
        # Every call comes from 127.0.0.1: the fuzzer's own failed logins and signups would
        # otherwise throttle that IP, and with it the logins that keep the other operations
        # authenticated. Per-account throttling stays as configured.
        "LOGIN_MAX_FAILURES_PER_IP": "1000000",
        "SIGNUP_MAX_PER_IP": "1000000",
    }
    base_url = f"http://127.0.0.1:{port}"
    with subprocess.Popen(
        serve.command("serve", "--port", str(port)),
        env=serve.environment(env),
        cwd=data_dir,
    ) as process:
        try:
            wait_until_serving(base_url, process)
            yield base_url
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def http_session() -> Iterator[requests.Session]:
    """One HTTP session for all calls, closed at the end (no sockets left to the GC)."""
    with requests.Session() as session:
        yield session


@dataclass
class Account:
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def session_id(self) -> str:
        sid: str = jwt.decode(self.token, options={"verify_signature": False})["sid"]
        return sid


class Accounts:
    """A live account per operation, renewed whenever a call ended its session."""

    def __init__(self, base_url: str, session: requests.Session) -> None:
        self._base_url = base_url
        self._http = session
        self._accounts: dict[str, Account] = {}

    def _post(self, path: str, **kwargs: Any) -> requests.Response:
        return self._http.post(f"{self._base_url}{path}", timeout=REQUEST_TIMEOUT, **kwargs)

    def _log_in(self, email: str, password: str) -> str | None:
        login = self._post("/api/token", data={"username": email, "password": password})
        return str(login.json()["access_token"]) if login.status_code == 200 else None

    def _sign_up(self) -> Account:
        email = f"fuzzer-{uuid.uuid4().hex[:12]}@example.com"
        password = f"fuzzing password {uuid.uuid4().hex[:8]}"
        signup = self._post(
            "/api/users",
            json={"email": email, "fname": "Fuzz", "lname": "Er", "password": password},
        )
        assert signup.status_code == 201, signup.text
        token = self._log_in(email, password)
        assert token is not None, "a new user could not log in"
        return Account(email, password, token)

    def for_operation(self, label: str) -> Account:
        if label not in self._accounts:
            self._accounts[label] = self._sign_up()
        return self._accounts[label]

    def _alive(self, account: Account) -> bool:
        me = self._http.get(
            f"{self._base_url}/api/me", headers=account.headers, timeout=REQUEST_TIMEOUT
        )
        return me.status_code != 401

    def renew_if_ended(self, label: str, status_code: int) -> None:
        """After a call: if it ended the session, log in again (a new user if the old one
        was deleted or its password or email changed)."""
        account = self._accounts.get(label)
        # Only an accepted request can end a session.
        if account is None or status_code >= 400 or self._alive(account):
            return
        token = self._log_in(account.email, account.password)
        self._accounts[label] = (
            Account(account.email, account.password, token) if token else self._sign_up()
        )

    def new_todo(self, label: str) -> str:
        account = self.for_operation(label)
        created = self._post("/api/todos", json={"text": "fuzzed"}, headers=account.headers)
        assert created.status_code == 201, created.text
        return str(created.json()["id"])


@pytest.fixture(scope="module")
def accounts(live_server: str, http_session: requests.Session) -> Accounts:
    return Accounts(live_server, http_session)


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
    loaded.config.request_timeout = REQUEST_TIMEOUT
    # Statuses that schema-valid requests get by design, for what no schema can say:
    # GET /api/todos documents a 400 for a cursor not made by the service or delta sync
    # combined with filters, and a 410 for an `updated_since` older than the tombstone
    # retention; a write with a well-formed If-Match naming another version is a 412 (RFC
    # 9110); a well-formed Last-Event-ID that this feed never issued is a 400, one whose
    # history is gone a 410. Each list is schemathesis' default plus those (a 5xx still fails
    # not_a_server_error).
    default = ["2xx", "3xx", 401, 403, 404, 409, 429, "5xx"]
    by_design = {
        "GET /api/todos": [400, 410],
        "GET /api/lists": [400, 410],
        "GET /api/todos/events": [400, 410],
        "PUT /api/todos/{todo_id}": [412],
        "PATCH /api/todos/{todo_id}": [412],
        "DELETE /api/todos/{todo_id}": [412],
        "PATCH /api/lists/{list_id}": [412],
        "DELETE /api/lists/{list_id}": [412],
    }
    for name, statuses_by_design in by_design.items():
        expected = {"expected-statuses": [*default, *statuses_by_design]}
        loaded.config.operations.operations.append(
            OperationConfig.from_dict(
                {"include-name": name, "checks": {"positive_data_acceptance": expected}}
            )
        )
    # The change feed never ends by itself: its first event is enough to check the answer.
    loaded.config.max_stream_events = 1
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
            for label, counted in sorted(statuses.items()):
                reporter.write_line(f"  {label}: {dict(sorted(counted.items()))}")


schema = _schema()
AUTHENTICATED = {
    operation.label
    for operation in (result.ok() for result in schema.get_all_operations())
    if operation.definition.raw.get("security")
}


def _with_real_ids_and_password(case: Any, accounts: Accounts, account: Account) -> None:
    """Point a valid path at something that exists, and send the real password where a valid
    body asks for one: random ids are always a 404 and random passwords always refused, so
    the handlers behind them would never run. A valid Idempotency-Key is made unique: a key
    reused with another body is a 422 by design, which no schema can say."""
    label = case.operation.label
    valid_headers = case.meta is not None and not case.meta.is_negative_at(ParameterLocation.HEADER)
    if valid_headers and case.headers and "idempotency-key" in {h.lower() for h in case.headers}:
        case.headers = {k: v for k, v in case.headers.items() if k.lower() != "idempotency-key"}
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    if case.meta is not None and not case.meta.is_negative_at(ParameterLocation.PATH):
        path = case.path_parameters or {}
        if "todo_id" in path:
            path["todo_id"] = accounts.new_todo(label)
        if "session_id" in path:
            path["session_id"] = account.session_id
    body_is_valid = case.meta is not None and not case.meta.is_negative_at(ParameterLocation.BODY)
    if body_is_valid and isinstance(case.body, dict):
        for field in ("password", "current_password"):
            if field in case.body:
                case.body[field] = account.password


@schema.parametrize()  # type: ignore[untyped-decorator]  # schemathesis is untyped here
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(
    case: Any, live_server: str, accounts: Accounts, http_session: requests.Session
) -> None:
    label = case.operation.label
    headers: dict[str, str] = {}
    if label in AUTHENTICATED:
        account = accounts.for_operation(label)
        headers = account.headers
        _with_real_ids_and_password(case, accounts, account)
    calls["total"] += 1
    status_code = 0
    try:
        response = case.call(base_url=live_server, session=http_session, headers=headers)
        status_code = response.status_code
        # Probes with a method the operation doesn't have (405) never reach authentication.
        if case.method.upper() == case.operation.method.upper():
            statuses[label][status_code] += 1
        in_grammar = (case.media_type or "").partition(";")[0] in GRAMMAR_BODIES
        case.validate_response(
            response,
            excluded_checks=[positive_data_acceptance] if in_grammar else None,
            headers=headers,
            transport_kwargs={"base_url": live_server, "session": http_session, "headers": headers},
        )
    except BaseException:  # schemathesis' FailureGroup is a BaseExceptionGroup
        calls["failed"] += 1
        raise
    finally:
        if label in AUTHENTICATED and status_code:
            accounts.renew_if_ended(label, status_code)


def test_every_authenticated_operation_was_exercised() -> None:
    """Runs after the fuzzing above: an operation that only ever answered 401 was never
    tested beyond its authentication."""
    only_401 = sorted(
        label
        for label, counted in statuses.items()
        if label in AUTHENTICATED and set(counted) == {401}
    )
    assert not only_401, f"only 401s (the token was dead) for: {only_401}"
