"""`serve --workers N`: /metrics adds up every worker (prometheus-client multiprocess mode)."""

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from service.embedded import free_port
from tests.live_server import server_environment
from tests.utils import wait_until_serving

REQUESTS = 40


def test_metrics_count_the_requests_of_all_workers(tmp_path: Path, wire_url: str) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = server_environment(wire_url, tmp_path, METRICS_ENABLED="true", LOG_LEVEL="WARNING")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        cwd=tmp_path,
    ) as process:
        try:
            wait_until_serving(base_url, process)
            # A new connection per request, so the kernel spreads them over both workers.
            for _ in range(REQUESTS):
                assert httpx.get(f"{base_url}/api/ready").status_code == 200
            text = httpx.get(f"{base_url}/metrics").text
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    match = re.search(
        r'^todo_http_requests_total\{method="GET",route="/api/ready",status="200"\} (\S+)$',
        text,
        flags=re.MULTILINE,
    )
    assert match, text
    assert float(match.group(1)) == REQUESTS
    # Served by the multiprocess collector (which has no per-process python_* metrics): which
    # worker takes which connection is up to the kernel, so the sum alone can't prove it.
    assert "python_gc_objects_collected_total" not in text
