"""Running wrk with bench/requests.lua and reading the result it prints."""

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LUA_SCRIPT = Path(__file__).with_name("requests.lua")
RESULT_PREFIX = "BENCH_RESULT "


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed no result."""


@dataclass(frozen=True)
class RequestLine:
    """One prepared request; wrk cycles through a file of them."""

    method: str
    path: str
    authorization: str | None = None
    content_type: str | None = None
    body: str = ""

    def render(self) -> str:
        fields = [
            self.method,
            self.path,
            self.authorization or "-",
            self.content_type or "-",
            self.body,
        ]
        if any("\t" in field or "\n" in field for field in fields):
            raise ValueError(f"tab or newline in a prepared request: {self}")
        return "\t".join(fields)


def write_requests(path: Path, requests: list[RequestLine]) -> Path:
    path.write_text("".join(request.render() + "\n" for request in requests), encoding="utf-8")
    return path


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: dict[str, int]
    latency_ms: dict[str, float]

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "requests_per_s": self.requests_per_s}


def executable() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise WrkError("wrk is not installed: apt-get install -y wrk (make bench does this)")
    return found


def start(
    base_url: str, requests_file: Path, *, connections: int, duration_s: float, timeout_s: float
) -> subprocess.Popen[str]:
    """Launch wrk in the background; read its result with `finish`."""
    threads = max(1, min(connections, 2))  # two cores: more threads only add switching
    command = [
        executable(),
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        f"--script={LUA_SCRIPT}",
        base_url,
    ]
    env = {**os.environ, "BENCH_REQUESTS": str(requests_file)}
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str], *, grace_s: float) -> WrkResult:
    """Wait for a wrk started by `start` and parse the JSON line of requests.lua's done()."""
    try:
        stdout, stderr = process.communicate(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise WrkError("wrk did not finish in time") from None
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            raw = json.loads(line.removeprefix(RESULT_PREFIX))
            latency = {key: value / 1000 for key, value in raw["latency_us"].items()}
            return WrkResult(
                requests=raw["requests"],
                duration_s=raw["duration_us"] / 1e6,
                errors=raw["errors"],
                latency_ms=latency,
            )
    raise WrkError(f"wrk printed no result (exit {process.returncode}): {stderr or stdout}")


def run(
    base_url: str, requests_file: Path, *, connections: int, duration_s: float, timeout_s: float
) -> WrkResult:
    process = start(
        base_url, requests_file, connections=connections, duration_s=duration_s, timeout_s=timeout_s
    )
    return finish(process, grace_s=duration_s + timeout_s + 30)
