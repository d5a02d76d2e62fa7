"""`make bench`: load-test the service with wrk and write bench/results/<name>.{json,md,png}.

Starts its own SecantusDB (file-backed, in a temporary directory) unless MONGODB_URL is set,
starts the service with `python -m service serve --workers N`, seeds users and todos, then
measures every scenario for a fixed duration at a few concurrency levels, reading the CPU time
of the service's processes (and the database's) from /proc before and after each wrk run.
Everything it started is stopped on exit, also on Ctrl-C or when --max-seconds runs out.

    python -m bench.run --duration 1 --concurrency 1,8 --big-todos 20000   # a smoke run
"""

import argparse
import datetime as dt
import json
import logging
import os
import platform
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database

from bench import procstat, seed, wrk
from bench.report import write_report
from bench.wrk import RequestLine
from service.embedded import EmbeddedDatabase, free_port

logger = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    path: str


SCENARIOS = [
    Scenario("1", "GET /api/health (floor: no auth, no DB)", "/api/health"),
    Scenario("2", "GET /api/me", "/api/me"),
    Scenario("3", "GET /api/todos?limit=20 (200 todos/user)", "/api/todos?limit=20"),
    Scenario("3m", "GET /api/mytodos?limit=20", "/api/mytodos?limit=20"),
    Scenario("4", "POST /api/todos", "/api/todos"),
    Scenario("5", "PATCH /api/todos/{id}", "/api/todos/{id}"),
    Scenario("6", "POST /api/token (password-hash-bound)", "/api/token"),
    Scenario("7", "GET /api/me during a login storm", "/api/me"),
    Scenario("8", "GET /api/todos?limit=20, big collection", "/api/todos?limit=20"),
]
SCENARIO_KEYS = [scenario.key for scenario in SCENARIOS]
PLAIN_SCENARIOS = ["1", "2", "3", "3m", "5", "4", "6"]  # 4 after 5: 5 edits seeded todos


def _int_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def _scenario_list(text: str) -> list[str]:
    keys = [part.strip() for part in text.split(",") if part.strip()]
    unknown = set(keys) - set(SCENARIO_KEYS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scenarios {sorted(unknown)}")
    return keys


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    add = parser.add_argument
    add("--workers", type=int, default=1, help="service workers of the main pass (default 1)")
    add("--scale-workers", type=int, default=2, help="workers of the scaling pass; 0: skip")
    add("--concurrency", type=_int_list, default=[1, 16, 64], help="default 1,16,64")
    add("--scale-concurrency", type=_int_list, help="default: the highest --concurrency")
    add("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    add("--warmup", type=float, default=2.0, help="seconds of warm-up per scenario (default 2)")
    add("--scenarios", type=_scenario_list, default=SCENARIO_KEYS, help="default: all")
    add("--readers", type=int, default=50, help="users with --todos-per-user todos (default 50)")
    add("--todos-per-user", type=int, default=200, help="default 200")
    add("--writers", type=int, default=16, help="users that POST todos (default 16)")
    add("--big-todos", type=int, default=1_000_000, help="scenario 8's collection size")
    add("--fill-budget", type=float, default=720.0, help="max seconds to seed scenario 8")
    add("--scenario8-concurrency", type=_int_list, help="default: 1 and the middle level")
    add("--login-concurrency", type=int, default=8, help="scenario 7's login connections")
    add("--repeat", type=int, default=1, help="extra passes at top concurrency (RSS growth)")
    add("--timeout", type=float, default=30.0, help="wrk's per-request timeout in seconds")
    add("--mongodb-url", default=os.environ.get("MONGODB_URL"), help="default: $MONGODB_URL")
    add("--db-pid", type=int, help="with --mongodb-url: the server's pid, for its CPU time")
    add("--db-name", default="todo_bench", help="database to (re)create (default todo_bench)")
    add(
        "--sync-on-commit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="embedded SecantusDB fsyncs each commit, as `serve` runs it (default on)",
    )
    add("--log-level", default="INFO", help="the service's LOG_LEVEL (default INFO, as shipped)")
    add("--env", action="append", default=[], metavar="KEY=VALUE", help="extra service env")
    add("--out", type=Path, default=RESULTS, help="output directory (default bench/results)")
    add("--name", default=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"), help="file name stem")
    add("--note", default="", help="a remark for the report, e.g. the machine's state")
    add(
        "--profile",
        type=Path,
        help="with py-spy installed: record on-CPU stacks of the main pass's top concurrency "
        "into this directory (collapsed-stack text; perturbs those measurements)",
    )
    add("--max-seconds", type=float, default=1800.0, help="give up after this long")
    return parser.parse_args(argv)


def request_lines(
    readers: list[seed.Account], writers: list[seed.Account]
) -> dict[str, list[RequestLine]]:
    """The prepared requests of scenarios 1-6 (keys as in SCENARIOS), rotating over users."""

    def bearer(account: seed.Account) -> str:
        return f"Bearer {account.token}"

    json_type = "application/json"
    patches = [
        RequestLine(
            "PATCH",
            f"/api/todos/{todo_id}",
            bearer(reader),
            json_type,
            json.dumps({"completed": n % 2 == 0}),
        )
        for reader in readers
        for n, todo_id in enumerate(reader.todo_ids[:10])
    ]
    logins = [
        RequestLine(
            "POST",
            "/api/token",
            None,
            "application/x-www-form-urlencoded",
            urllib.parse.urlencode({"username": reader.email, "password": seed.PASSWORD}),
        )
        for reader in readers
    ]
    return {
        "1": [RequestLine("GET", "/api/health")],
        "2": [RequestLine("GET", "/api/me", bearer(r)) for r in readers],
        "3": [RequestLine("GET", "/api/todos?limit=20", bearer(r)) for r in readers],
        "3m": [RequestLine("GET", "/api/mytodos?limit=20", bearer(r)) for r in readers],
        "4": [
            RequestLine("POST", "/api/todos", bearer(w), json_type, '{"text": "bench: new"}')
            for w in writers
        ],
        "5": patches,
        "6": logins,
    }


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def check(self, step: str) -> None:
        if time.monotonic() > self.end:
            raise TimeoutError(f"--max-seconds ran out before {step}")


class Service:
    """`python -m service serve` in its own process group, with a health-checked start."""

    def __init__(
        self,
        *,
        workers: int,
        env: dict[str, str],
        log_path: Path,
        command: list[str] | None = None,
        health_path: str = "/api/health",
    ) -> None:
        """command: another server to run the same way (bench/compare.py's bare app and
        tutorial stack), with `{port}` in it replaced by the port; default the service."""
        self.workers = workers
        self.port = free_port()
        self.env = env
        self.log_path = log_path
        self.command = command
        self.health_path = health_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the service is not running")
        return self.process.pid

    def start(self, timeout: float = 90.0) -> None:
        if self.command is not None:
            command = [part.replace("{port}", str(self.port)) for part in self.command]
        else:
            command = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1"]
            command += ["--port", str(self.port), "--workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                # Not the repository: a developer's .env there must not change the settings.
                cwd=self.log_path.parent,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited during startup; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.base_url + self.health_path, timeout=2) as r:  # noqa: S310 -- loopback
                    if r.status == 200 and self._workers_up():
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start in {timeout} s")
            time.sleep(0.2)

    def _workers_up(self) -> bool:
        # With --workers > 1 uvicorn's supervisor spawns one process per worker.
        return self.workers == 1 or len(procstat.descendants(self.pid)) > self.workers

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def cpu(self) -> float:
        return procstat.tree_cpu_seconds(self.pid)

    def rss(self) -> dict[str, float]:
        """The largest resident and peak-resident size among the service's processes."""
        found = procstat.tree_memory(self.pid)
        return {
            "rss_mb": round(max(m.rss_mb for m in found), 1),
            "peak_rss_mb": round(max(m.peak_rss_mb for m in found), 1),
            "processes": len(found),
        }


class Bench:
    """One run: the database, the seeded data and every measurement taken."""

    def __init__(
        self,
        args: argparse.Namespace,
        db: Database[dict[str, Any]] | None,
        db_pid: int | None,
        tmp: Path,
    ) -> None:
        """db None: a server without a MongoDB database (bench/compare.py's bare app and
        tutorial stack); request files are then set in `files` by the caller."""
        self.args = args
        self.db = db
        self.db_pid = db_pid
        self.tmp = tmp
        self.measurements: list[dict[str, Any]] = []
        self.files: dict[str, Path] = {}
        self.seeding: dict[str, Any] = {}
        self.memory: list[dict[str, Any]] = []
        self.template: dict[str, Any] = {}
        self.label = ""  # put before each measurement's log line (bench/compare.py's server)

    def service_env(self, secret_key: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ENVIRONMENT="production",
            SECRET_KEY=secret_key,
            MONGODB_URL=self.args.mongodb_url,
            MONGODB_DB=self.args.db_name,
            LOG_LEVEL=self.args.log_level,
            DATA_DIR=str(self.tmp / "data"),
            ACCESS_TOKEN_EXPIRE_MINUTES="600",
        )
        for pair in self.args.env:
            key, sep, value = pair.partition("=")
            if not sep:
                raise SystemExit(f"--env wants KEY=VALUE, got {pair!r}")
            env[key] = value
        return env

    def db_cpu(self) -> float | None:
        return procstat.tree_cpu_seconds(self.db_pid) if self.db_pid else None

    # Seeding -------------------------------------------------------------------------------

    def seed_data(self, service: Service, deadline: Deadline) -> None:
        args = self.args
        assert self.db is not None
        started = time.monotonic()
        login_deadline = min(deadline.end, time.monotonic() + 300)
        readers = seed.create_users(
            service.base_url, self.db, prefix="reader", count=args.readers, deadline=login_deadline
        )
        writers = seed.create_users(
            service.base_url, self.db, prefix="writer", count=args.writers, deadline=login_deadline
        )
        self.template = seed.todo_template(service.base_url, self.db, readers[0])
        seed.give_todos(self.db, self.template, readers, args.todos_per_user)
        self.seeding = {
            "readers": len(readers),
            "writers": len(writers),
            "todos_per_reader": args.todos_per_user,
            "todos": self.db.todos.estimated_document_count(),
            "seconds": round(time.monotonic() - started, 1),
        }
        logger.info("seeded %s", self.seeding)
        self.write_request_files(readers, writers)

    def write_request_files(self, readers: list[seed.Account], writers: list[seed.Account]) -> None:
        for key, lines in request_lines(readers, writers).items():
            self.files[key] = wrk.write_requests(self.tmp / f"scenario-{key}.tsv", lines)

    # Measuring -----------------------------------------------------------------------------

    def measure(
        self,
        service: Service,
        scenario: str,
        concurrency: int,
        *,
        phase: str,
        file_key: str | None = None,
    ) -> dict[str, Any]:
        """One wrk run of `scenario` with the CPU time it cost the service and the database."""
        args = self.args
        requests_file = self.files[file_key or scenario]
        profiling = args.profile and phase == "main" and concurrency == max(args.concurrency)
        profiler = self._start_profiler(service, scenario) if profiling else None
        cpu_before, db_before = service.cpu(), self.db_cpu()
        try:
            result = wrk.run(
                service.base_url,
                requests_file,
                connections=concurrency,
                duration_s=args.duration,
                timeout_s=args.timeout,
            )
        finally:
            if profiler is not None:
                profiler.wait(timeout=args.duration + 30)
        record = self._record(service, scenario, concurrency, phase, result, cpu_before, db_before)
        record["settle_s"] = self.settle(service)
        self.measurements.append(record)
        return record

    def settle(self, service: Service, *, limit_s: float = 120.0) -> float:
        """Wait until the service and the database are idle; the seconds it took.

        wrk stops sending at the end of a run, but requests still queued in the service (slow
        writes, logins waiting for a hashing thread) keep running; the next run must not
        inherit them.
        """
        started = time.monotonic()
        interval = 0.5
        while time.monotonic() - started < limit_s:
            before = service.cpu() + (self.db_cpu() or 0.0)
            time.sleep(interval)
            busy = (service.cpu() + (self.db_cpu() or 0.0) - before) / interval
            if busy < 0.05:  # of one core: nothing but background housekeeping
                break
        waited = time.monotonic() - started
        if waited > 2:
            logger.info("waited %.1f s for queued requests to finish", waited)
        return round(waited, 1)

    def _start_profiler(self, service: Service, scenario: str) -> subprocess.Popen[bytes]:
        """py-spy sampling the service (and its workers) for as long as the wrk run lasts."""
        out: Path = self.args.profile
        out.mkdir(parents=True, exist_ok=True)
        beside = Path(sys.executable).parent / "py-spy"
        command = [
            str(beside) if beside.exists() else "py-spy",
            "record",
            "--pid",
            str(service.pid),
            "--subprocesses",
            "--gil",
        ]
        command += ["--nolineno", "--nonblocking", "--format", "raw"]
        command += ["--duration", str(round(self.args.duration))]
        command += ["--output", str(out / f"scenario-{scenario}-w{service.workers}.txt")]
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def measure_login_storm(self, service: Service, concurrency: int, *, phase: str) -> None:
        """Scenario 7: GET /api/me while a second wrk hammers POST /api/token."""
        args = self.args
        cpu_before, db_before = service.cpu(), self.db_cpu()
        storm = wrk.start(
            service.base_url,
            self.files["6"],
            connections=args.login_concurrency,
            duration_s=args.duration + 2,
            timeout_s=args.timeout,
        )
        try:
            time.sleep(1.0)  # let the logins saturate the hashing threads first
            result = wrk.run(
                service.base_url,
                self.files["2"],
                connections=concurrency,
                duration_s=args.duration,
                timeout_s=args.timeout,
            )
        finally:
            logins = wrk.finish(storm, grace_s=args.duration + args.timeout + 30)
        record = self._record(service, "7", concurrency, phase, result, cpu_before, db_before)
        record["settle_s"] = self.settle(service)
        # The CPU covers both wrk runs, so a per-request figure would mislead.
        record["service_cpu_per_request_ms"] = None
        record["db_cpu_per_request_ms"] = None
        record["logins"] = {**logins.as_dict(), "connections": args.login_concurrency}
        self.measurements.append(record)

    def _record(
        self,
        service: Service,
        scenario: str,
        concurrency: int,
        phase: str,
        result: wrk.WrkResult,
        cpu_before: float,
        db_before: float | None,
    ) -> dict[str, Any]:
        cpu = service.cpu() - cpu_before
        db_after = self.db_cpu()
        db = None if db_before is None or db_after is None else db_after - db_before
        requests = result.requests

        def per_request(seconds: float | None) -> float | None:
            return None if seconds is None or not requests else round(seconds * 1000 / requests, 4)

        record: dict[str, Any] = {
            "phase": phase,
            "workers": service.workers,
            "scenario": scenario,
            "concurrency": concurrency,
            **result.as_dict(),
            "error_count": result.error_count,
            "service_cpu_s": round(cpu, 2),
            "service_cpu_per_request_ms": per_request(cpu),
            "db_cpu_s": None if db is None else round(db, 2),
            "db_cpu_per_request_ms": per_request(db),
            "todos_in_collection": None
            if self.db is None
            else self.db.todos.estimated_document_count(),
            **service.rss(),
            "loadavg": procstat.loadavg(),
        }
        logger.info(
            "%s%-5s w%d scenario %-2s c=%-3d %8.1f req/s p50 %7.2f ms p99 %8.2f ms "
            "cpu/req %s ms errors %d",
            self.label,
            phase,
            service.workers,
            scenario,
            concurrency,
            result.requests_per_s,
            result.latency_ms["p50"],
            result.latency_ms["p99"],
            record["service_cpu_per_request_ms"],
            result.error_count,
        )
        return record

    def warm_up(self, service: Service, scenario: str, concurrency: int) -> None:
        if self.args.warmup <= 0:
            return
        key = "2" if scenario == "7" else scenario
        wrk.run(
            service.base_url,
            self.files[key],
            connections=concurrency,
            duration_s=self.args.warmup,
            timeout_s=self.args.timeout,
        )
        self.settle(service)

    def run_pass(
        self, service: Service, concurrencies: list[int], *, phase: str, deadline: Deadline
    ) -> None:
        """Every selected scenario (but 8) at every concurrency level."""
        wanted = [key for key in [*PLAIN_SCENARIOS, "7"] if key in self.args.scenarios]
        for key in wanted:
            deadline.check(f"scenario {key}")
            self.warm_up(service, key, max(concurrencies))
            for concurrency in concurrencies:
                if key == "7":
                    self.measure_login_storm(service, concurrency, phase=phase)
                else:
                    self.measure(service, key, concurrency, phase=phase)

    def note_memory(self, service: Service, when: str) -> None:
        entry = {"when": when, "workers": service.workers, **service.rss()}
        logger.info("memory %s", entry)
        self.memory.append(entry)

    def scenario_8(self, service: Service, deadline: Deadline) -> dict[str, Any]:
        """Fill the collection with other owners' todos, then list again at the same levels."""
        args = self.args
        levels = args.scenario8_concurrency or sorted(
            {1, args.concurrency[len(args.concurrency) // 2]}
        )
        before = {
            m["concurrency"]: m
            for m in self.measurements
            if m["phase"] == "main" and m["scenario"] == "3" and m["concurrency"] in levels
        }
        missing = [c for c in levels if c not in before]
        for concurrency in missing:  # scenario 3 was skipped or ran at other levels
            self.measure(service, "3", concurrency, phase="main")
        deadline.check("scenario 8's fill")
        budget = min(args.fill_budget, max(0.0, deadline.end - time.monotonic() - 120))
        last_log = [time.monotonic()]

        def progress(count: int) -> None:
            if time.monotonic() - last_log[0] > 15:
                logger.info("filling: %d todos", count)
                last_log[0] = time.monotonic()

        assert self.db is not None
        fill = seed.fill_collection(
            self.db,
            self.template,
            total=args.big_todos,
            per_owner=args.todos_per_user,
            budget_s=budget,
            progress=progress,
        )
        logger.info(
            "filled to %d todos in %.0f s (%.0f docs/s, complete=%s)",
            fill.total,
            fill.seconds,
            fill.docs_per_s,
            fill.complete,
        )
        self.warm_up(service, "3", max(levels))
        for concurrency in levels:
            record = self.measure(service, "8", concurrency, phase="main", file_key="3")
            record["small_collection_todos"] = self.seeding["todos"]
        return {
            "requested_todos": args.big_todos,
            "reached_todos": fill.total,
            "complete": fill.complete,
            "fill_seconds": round(fill.seconds, 1),
            "fill_docs_per_s": round(fill.docs_per_s),
            "concurrency": levels,
        }


def _versions() -> dict[str, str]:
    names = ["fastapi", "starlette", "uvicorn", "pydantic", "beanie", "pymongo", "secantusdb"]
    found: dict[str, str] = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        banner = subprocess.run(
            [wrk.executable(), "--version"], capture_output=True, text=True, check=False
        )
        found["wrk"] = (banner.stdout or banner.stderr).split("\n")[0].split(" Copyright")[0]
    except wrk.WrkError:
        pass
    return found


def _git_commit(root: Path = ROOT) -> str:
    """The commit measured ("+dirty service/" if service/ has local changes), if git knows."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "service"],
            cwd=root,
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown"
    commit = result.stdout.strip() or "unknown"
    return commit + ("+dirty service/" if dirty.stdout.strip() else "")


@contextmanager
def _database(args: argparse.Namespace, tmp: Path) -> Iterator[tuple[str, int | None]]:
    if args.mongodb_url:
        yield args.mongodb_url, args.db_pid
        return
    with EmbeddedDatabase(tmp / "db", sync_on_commit=args.sync_on_commit) as server:
        yield server.url, server.pid


def run(args: argparse.Namespace) -> Path:
    """The whole run; the results are written even when it is cut short (marked partial)."""
    deadline = Deadline(args.max_seconds)
    started = dt.datetime.now(dt.UTC)
    load_before = procstat.loadavg()
    external = bool(args.mongodb_url)
    wrk.executable()  # fail early when wrk is missing
    secret_key = secrets.token_urlsafe(48)
    bench: Bench | None = None
    big: dict[str, Any] | None = None
    stopped_by: str | None = None
    log_tail: list[str] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="todo-bench-")))
        url, db_pid = stack.enter_context(_database(args, tmp))
        args.mongodb_url = url
        client: MongoClient[dict[str, Any]] = MongoClient(url, tz_aware=True)
        stack.callback(client.close)
        client.drop_database(args.db_name)
        bench = Bench(args, client[args.db_name], db_pid, tmp)
        env = bench.service_env(secret_key)
        log_path = tmp / "service.log"

        def started_service(workers: int) -> Service:
            service = Service(workers=workers, env=env, log_path=log_path)
            stack.callback(service.stop)
            service.start()
            return service

        try:
            service = started_service(args.workers)
            bench.seed_data(service, deadline)
            bench.run_pass(service, args.concurrency, phase="main", deadline=deadline)
            bench.note_memory(service, "after the main pass")
            for n in range(args.repeat):
                levels = [max(args.concurrency)]
                bench.run_pass(service, levels, phase=f"repeat{n + 1}", deadline=deadline)
                bench.note_memory(service, f"after repeat pass {n + 1}")
            service.stop()
            # Scaling before scenario 8: with a big collection some writes get much slower
            # on SecantusDB (see REPORT.md), which would mix two effects.
            if args.scale_workers:
                scaled = started_service(args.scale_workers)
                levels = args.scale_concurrency or [max(args.concurrency)]
                bench.run_pass(scaled, levels, phase="scaling", deadline=deadline)
                bench.note_memory(scaled, "after the scaling pass")
                scaled.stop()
            if "8" in args.scenarios:
                service = started_service(args.workers)
                big = bench.scenario_8(service, deadline)
                bench.note_memory(service, "after scenario 8")
                service.stop()
        except (KeyboardInterrupt, TimeoutError) as exc:
            stopped_by = f"{type(exc).__name__}: {exc}".rstrip(": ")
            logger.error("stopped early (%s); writing what was measured", stopped_by)
        finally:
            if log_path.exists():
                log_tail = log_path.read_text(errors="replace").splitlines()[-20:]

    finished = dt.datetime.now(dt.UTC)
    document = {
        "name": args.name,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "partial": stopped_by,
        "note": args.note,
        "command": shlex.join(["python", "-m", "bench.run", *sys.argv[1:]]),
        "commit": _git_commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": procstat.loadavg(),
        },
        "versions": _versions(),
        "options": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
            if key not in {"mongodb_url"}
        },
        "database": "external (MONGODB_URL)"
        if external
        else f"SecantusDB file-backed, sync_on_commit={args.sync_on_commit}",
        "scenarios": {s.key: s.title for s in SCENARIOS},
        "seeding": bench.seeding,
        "scenario_8": big,
        "memory": bench.memory,
        "measurements": bench.measurements,
        "service_log_tail": log_tail,
    }
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{args.name}.json"
    json_path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    if bench.measurements:
        write_report(json_path)
    if stopped_by:
        raise KeyboardInterrupt
    return json_path


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_command(
    parse: Callable[[list[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace], Path],
    argv: list[str] | None = None,
) -> int:
    """A benchmark's command line: logging, the arguments, `run`, and an exit code (130 when
    interrupted, after everything started was stopped)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse(argv)
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so everything started gets stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        path = run(args)
    except KeyboardInterrupt:
        logger.error("interrupted; everything started was stopped, partial results written")
        return 130
    logger.info("wrote %s and its .md/.png", path)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
