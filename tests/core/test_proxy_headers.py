"""uvicorn must not rewrite client addresses from X-Forwarded-For: the service decides.

uvicorn's default (proxy_headers=True, forwarded_allow_ips=127.0.0.1) would let anything on
the host, or a proxy not listed in TRUSTED_PROXIES, pick the address that login throttling
and the session list see.
"""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from service.embedded import free_port
from tests.conftest import TEST_SECRET_KEY
from tests.live_server import serve_options
from tests.utils import DEFAULT_PASSWORD


@pytest.mark.parametrize("workers", [1, 4])
def test_serve_turns_uvicorn_proxy_headers_off(
    monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    kwargs = serve_options(monkeypatch, workers)
    assert kwargs["proxy_headers"] is False
    assert kwargs["workers"] == workers


@pytest.fixture
def served(wire_url: str) -> Iterator[str]:
    """`python -m service serve --workers 2` on the wire server; its base URL."""
    port = free_port()
    database = f"test_{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "MONGODB_URL": wire_url,
        "MONGODB_DB": database,
        "SECRET_KEY": TEST_SECRET_KEY,
        "LOG_LEVEL": "WARNING",
        # uvicorn reads this as its default for trusted proxies; it must not matter.
        "FORWARDED_ALLOW_IPS": "*",
    }
    env.pop("TRUSTED_PROXIES", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "the server exited"
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(30)
        client: MongoClient[dict[str, Any]]
        with MongoClient(wire_url) as client:
            client.drop_database(database)


def test_workers_ignore_forwarded_for_from_localhost(served: str) -> None:
    spoofed = {"X-Forwarded-For": "198.51.100.77"}
    with httpx.Client(base_url=served, headers=spoofed, timeout=30) as client:
        body = {"email": "proxy@example.com", "fname": "A", "lname": "B"}
        response = client.post("/api/users", json={**body, "password": DEFAULT_PASSWORD})
        assert response.status_code == 201, response.text
        login = client.post(
            "/api/token", data={"username": body["email"], "password": DEFAULT_PASSWORD}
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        sessions = client.get("/api/sessions", headers={"Authorization": f"Bearer {token}"})
    assert [session["ip"] for session in sessions.json()] == ["127.0.0.1"]
