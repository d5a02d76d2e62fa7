"""SIGTERM: the server stops accepting, finishes the request in flight, closes the DB client."""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from service.embedded import free_port
from tests.live_server import server_environment
from tests.utils import wait_until_serving


def test_sigterm_finishes_the_request_in_flight_then_exits_cleanly(
    tmp_path: Path, wire_url: str
) -> None:
    port = free_port()
    env = server_environment(wire_url, tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", process)
        body = json.dumps(
            {"email": "late@example.com", "fname": "A", "lname": "B", "password": "x" * 12}
        ).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            head = (
                f"POST /api/users HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            # Headers and half the body: the request is now in flight, waiting for the rest.
            conn.sendall(head + body[:10])
            time.sleep(0.5)  # let the server read them (ordering only; nothing is timed)
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            conn.sendall(body[10:])
            response = conn.recv(65536).decode()
        assert response.startswith("HTTP/1.1 201"), response
        assert process.wait(timeout=30) == 0
        stderr = process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
    messages = [json.loads(line)["message"] for line in stderr.splitlines() if line.startswith("{")]
    assert "MongoDB client closed" in messages
    assert messages.index("MongoDB client closed") > messages.index("request")
    with socket.socket() as probe:  # and nothing listens any more
        assert probe.connect_ex(("127.0.0.1", port)) != 0
