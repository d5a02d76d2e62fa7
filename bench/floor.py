"""The floor: service CPU per request of `GET /api/health` against the bare FastAPI app.

Starts the bare app (bench/bare.py) and one service per `--tree` (a checkout: this one, or a
worktree of another commit), each a single uvicorn process on the same options (`serve`'s own,
service/__main__.py `uvicorn_options`), then runs wrk against each in turn, interleaved, for
`--rounds` rounds, reading every process's CPU time from /proc around each run. The services
run with production settings and LOG_LEVEL=INFO (as shipped; their access lines go to a file),
on one SecantusDB started here (`/api/health` never touches it).

    python -m bench.floor --tree after=. --tree before=/work/main --rounds 6 --duration 3

Prints a table of the median CPU per request and the median of the per-round ratios to the
bare app. `--bare-http bounded` runs the bare app on the service's own HTTP protocol (the
bounded-head httptools subclass) instead of stock httptools, to see what that costs alone.
"""

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procstat, wrk
from bench.wrk import RequestLine
from service.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]
SECANTUSD = Path(sys.executable).with_name("secantusd-py")


@dataclass
class Target:
    """One server under test: its name, how to start it and what it measured."""

    name: str
    command: list[str]
    env: dict[str, str]
    path: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    cpu_per_request_us: list[float] = field(default_factory=list)
    requests_per_s: list[float] = field(default_factory=list)
    idle_cpu_us_per_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, log: Path, timeout: float = 60.0) -> None:
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=log.parent,  # not a checkout: its .env must not change the settings
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited during startup; see {log}")
            try:
                with urllib.request.urlopen(self.url + self.path, timeout=2) as response:  # noqa: S310 -- loopback
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer in {timeout} s; see {log}")
            time.sleep(0.2)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def cpu(self) -> float:
        return procstat.tree_cpu_seconds(self.pid)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.floor", description=__doc__.split("\n\n")[0]
    )
    add = parser.add_argument
    add(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a checkout whose service to measure (repeatable; default: after=this checkout)",
    )
    add(
        "--tree-env",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE",
        help="extra env for one --tree, e.g. after-quiet:LOG_LEVEL=WARNING (repeatable)",
    )
    add("--rounds", type=int, default=6, help="interleaved rounds (default 6)")
    add("--duration", type=float, default=3.0, help="seconds per wrk run (default 3)")
    add("--warmup", type=float, default=2.0, help="seconds of warm-up per server (default 2)")
    add("--connections", type=int, default=16, help="wrk connections (default 16)")
    add("--log-level", default="INFO", help="the services' LOG_LEVEL (default INFO, as shipped)")
    add("--env", action="append", default=[], metavar="KEY=VALUE", help="extra service env")
    add(
        "--bare-http",
        choices=["httptools", "bounded", "both"],
        default="httptools",
        help="the bare app's HTTP protocol: uvicorn's httptools (default), the service's "
        "bounded-head subclass, or both (two bare servers; ratios are to the first)",
    )
    add("--json", type=Path, help="also write the measurements here")
    # Internal: how the bare app is started (in its own process, like the services).
    add("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def serve_bare(port: int, http: str) -> None:
    """Run bench/bare.py with the options `python -m service serve` gives uvicorn."""
    import uvicorn

    from service.__main__ import uvicorn_options
    from service.config import get_settings

    options = uvicorn_options(get_settings())
    if http == "httptools":
        options["http"] = "httptools"
    uvicorn.run("bench.bare:app", host="127.0.0.1", port=port, workers=1, **options)


def start_database(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (tmp / "secantusd.log").open("ab")
    process = subprocess.Popen(
        [str(SECANTUSD), "--host", "127.0.0.1", "--port", str(port), "--storage-path", ":memory:"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    return process, f"mongodb://127.0.0.1:{port}/?directConnection=true"


def measure(target: Target, requests: Path, args: argparse.Namespace) -> tuple[float, float]:
    """One wrk run: (service CPU µs per request, req/s)."""
    before = target.cpu()
    result = wrk.run(
        target.url,
        requests,
        connections=args.connections,
        duration_s=args.duration,
        timeout_s=10,
    )
    spent = target.cpu() - before
    if result.error_count or not result.requests:
        raise RuntimeError(f"{target.name}: wrk saw errors {result.errors}")
    return spent / result.requests * 1e6, result.requests_per_s


def idle_rate(target: Target, seconds: float = 2.0) -> float:
    """CPU µs per second the server spends with no requests (background tasks)."""
    before = target.cpu()
    time.sleep(seconds)
    return (target.cpu() - before) / seconds * 1e6


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_bare is not None:
        serve_bare(args.serve_bare, args.bare_http)
        return 0
    trees = [pair.partition("=") for pair in args.tree] or [("after", "=", str(ROOT))]
    with tempfile.TemporaryDirectory(prefix="floor-") as tmp_name:
        tmp = Path(tmp_name)
        database, url = start_database(tmp)
        env = dict(os.environ)
        env.update(
            ENVIRONMENT="production",
            SECRET_KEY=secrets.token_urlsafe(32),
            MONGODB_URL=url,
            LOG_LEVEL=args.log_level,
            DATA_DIR=str(tmp / "data"),
        )
        for pair in args.env:
            key, sep, value = pair.partition("=")
            if not sep:
                raise SystemExit(f"--env wants KEY=VALUE, got {pair!r}")
            env[key] = value
        targets = []
        protocols = ["httptools", "bounded"] if args.bare_http == "both" else [args.bare_http]
        for http in protocols:
            port = free_port()
            command = [sys.executable, "-m", "bench.floor", "--bare-http", http]
            command += ["--serve-bare", str(port)]
            bare_env = {**env, "PYTHONPATH": str(ROOT)}
            targets.append(Target(f"bare-{http}", command, bare_env, "/health", port))
        extra_env: dict[str, dict[str, str]] = {}
        for item in args.tree_env:
            name, _, pair = item.partition(":")
            key, _, value = pair.partition("=")
            extra_env.setdefault(name, {})[key] = value
        for name, _, directory in trees:
            port = free_port()
            command = [sys.executable, "-m", "service", "serve", "--port", str(port)]
            tree_env = {**env, "PYTHONPATH": str(Path(directory).resolve()), "PORT": str(port)}
            tree_env.update(extra_env.get(name, {}))
            targets.append(Target(name, command, tree_env, "/api/health", port))
        files = {
            path: wrk.write_requests(tmp / f"{n}.tsv", [RequestLine("GET", path)])
            for n, path in enumerate({target.path for target in targets})
        }
        try:
            for target in targets:
                target.start(tmp / f"{target.name}.log")
            for target in targets:
                wrk.run(
                    target.url,
                    files[target.path],
                    connections=args.connections,
                    duration_s=args.warmup,
                    timeout_s=10,
                )
                target.idle_cpu_us_per_s = idle_rate(target)
            for round_number in range(args.rounds):
                # Rotate the order: whoever runs first in a round doesn't always get the
                # quietest (or busiest) machine.
                shift = round_number % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    cpu_us, rate = measure(target, files[target.path], args)
                    target.cpu_per_request_us.append(cpu_us)
                    target.requests_per_s.append(rate)
                print(
                    f"round {round_number + 1}: "
                    + ", ".join(f"{t.name} {t.cpu_per_request_us[-1]:.1f} µs" for t in targets),
                    file=sys.stderr,
                )
        finally:
            for target in targets:
                target.stop()
            database.terminate()
            database.wait(10)
    report(targets, args)
    return 0


def report(targets: list[Target], args: argparse.Namespace) -> None:
    bare = targets[0]
    rows: list[dict[str, Any]] = []
    print(
        f"wrk -c{args.connections}, {args.rounds} interleaved rounds of {args.duration:g} s, "
        f"load average {procstat.loadavg()}"
    )
    print()
    print("| server | CPU/request µs (median, min-max) | x bare (median of rounds) | req/s |")
    print("|---|---|---|---|")
    for target in targets:
        ratios = [
            mine / floor
            for mine, floor in zip(target.cpu_per_request_us, bare.cpu_per_request_us, strict=True)
        ]
        row = {
            "name": target.name,
            "cpu_per_request_us": target.cpu_per_request_us,
            "requests_per_s": target.requests_per_s,
            "ratios": ratios,
            "idle_cpu_us_per_s": target.idle_cpu_us_per_s,
        }
        rows.append(row)
        cpu = target.cpu_per_request_us
        print(
            f"| {target.name} | {statistics.median(cpu):.1f} ({min(cpu):.1f}-{max(cpu):.1f}) "
            f"| {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) "
            f"| {statistics.median(target.requests_per_s):.0f} |"
        )
    print()
    print("idle CPU µs/s: " + ", ".join(f"{t.name} {t.idle_cpu_us_per_s:.0f}" for t in targets))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": str(args.json)}, "rows": rows}, default=str, indent=1
            )
        )


if __name__ == "__main__":
    sys.exit(main())
