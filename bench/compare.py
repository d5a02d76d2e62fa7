"""`make bench-compare`: the issue-13 target ratios, all in one run.

Starts side by side, each on its own fresh database seeded the same way (bench/seed.py):
- **bare**: bench/bare.py's `GET /health` under uvicorn, the floor every "x bare" ratio uses;
- **before**: `python -m service serve` from `--before DIR` (a checkout of the previous main);
- **current**: the same from `--current DIR` (default: this checkout);
- **tutorial**: bench/tutorial (sync routes, SQLAlchemy ORM on a SQLite file, one process);
- **current-2w**: the current service with `--scale-workers` workers, for `GET /api/me`.

Then measures them interleaved: each round goes through the operations (health, me, list of
20, PATCH, create) and, for each, runs wrk once against every server that has it (a different
server first each round), so slow drifts of the machine hit all of them alike. CPU per request
is utime+stime of the server's processes from /proc (bench/procstat.py) divided by the
requests wrk completed. The results (`<date>-compare-<commit>.json/.md/.png`) hold every
measurement and a table per target; `python -m bench.compare_report FILE.json` redoes the .md
and .png.

    python -m bench.compare --before /work/wt/before --rounds 1 --duration 2   # a quick check
"""

import argparse
import datetime as dt
import json
import logging
import os
import platform
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from bench import procstat, wrk
from bench.compare_report import OPS, write_report
from bench.run import ROOT, Bench, Deadline, Service, _git_commit, _versions, run_command
from bench.tutorial import seed as tutorial_seed
from service.embedded import EmbeddedDatabase

logger = logging.getLogger("bench")

RESULTS = Path(__file__).resolve().parent / "results"
# The file key in bench.run.request_lines of each operation's prepared requests.
OP_FILES = {"health": "1", "me": "2", "list": "3", "create": "4", "patch": "5"}
# PATCH before create, as bench.run does: PATCH edits seeded todos, create adds others.
OP_ORDER = ["health", "me", "list", "patch", "create"]


def _ops(text: str) -> list[str]:
    ops = [part.strip() for part in text.split(",") if part.strip()]
    unknown = set(ops) - set(OP_ORDER)
    if unknown or not ops:
        raise argparse.ArgumentTypeError(f"operations among {OP_ORDER}, got {text!r}")
    return [op for op in OP_ORDER if op in ops]


def _checkout(text: str) -> Path:
    path = Path(text).resolve()
    if not (path / "service" / "__main__.py").is_file():
        raise argparse.ArgumentTypeError(f"{path} is not a todo-service checkout")
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", description=__doc__.split("\n\n")[0]
    )
    add = parser.add_argument
    add("--before", type=_checkout, help="checkout of the previous main; omit to skip it")
    add("--current", type=_checkout, default=ROOT, help="checkout measured (default: this one)")
    add("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    add("--duration", type=float, default=5.0, help="seconds per wrk run (default 5)")
    add("--warmup", type=float, default=1.0, help="seconds of warm-up before each (default 1)")
    add("--concurrency", type=int, default=16, help="wrk connections (default 16)")
    add("--ops", type=_ops, default=OP_ORDER, help=f"default {','.join(OP_ORDER)}")
    add("--scale-workers", type=int, default=2, help="workers of current-Nw; 0: skip")
    add(
        "--tutorial",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the tutorial stack (bench/tutorial) too (default on)",
    )
    add("--readers", type=int, default=50, help="users with --todos-per-user todos (default 50)")
    add("--todos-per-user", type=int, default=200, help="default 200")
    add("--writers", type=int, default=16, help="users that POST todos (default 16)")
    add("--timeout", type=float, default=30.0, help="wrk's per-request timeout in seconds")
    add("--db-name", default="todo_bench", help="database name in each server (default todo_bench)")
    add(
        "--sync-on-commit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="embedded SecantusDB fsyncs each commit, as `serve` runs it (default on)",
    )
    add("--log-level", default="INFO", help="the services' LOG_LEVEL (default INFO, as shipped)")
    add("--env", action="append", default=[], metavar="KEY=VALUE", help="extra service env")
    add(
        "--page-sizes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after the rounds, run bench/page_sizes.py of --current if it exists (default on)",
    )
    add("--page-sizes-args", default="", help="arguments for bench.page_sizes (one string)")
    add("--page-sizes-timeout", type=float, default=300.0, help="seconds (default 300)")
    add("--out", type=Path, default=RESULTS, help="output directory (default bench/results)")
    add("--name", help="file name stem (default <date>-compare-<commit>)")
    add("--note", default="", help="a remark for the report, e.g. the machine's state")
    add("--max-seconds", type=float, default=1200.0, help="give up after this long")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.concurrency < 1:
        parser.error("--rounds, --duration and --concurrency must be positive")
    return args


@dataclass
class System:
    """One server under test, with its own Bench (request files, measurements)."""

    name: str
    title: str
    ops: list[str]
    service: Service
    bench: Bench
    info: dict[str, Any] = field(default_factory=dict)
    concurrency: int = 16
    seed: Callable[[], None] | None = None


def _uvicorn(app: str) -> list[str]:
    """The uvicorn flags `python -m service serve` uses, for the bare app and the tutorial.

    The service runs httptools through a subclass that bounds request heads; the bare app gets
    plain httptools: the floor is what FastAPI on uvicorn costs, nothing of ours.
    """
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--http",
        "httptools",
        "--no-access-log",
        "--no-proxy-headers",
        "--no-server-header",
        "--log-level",
        "warning",
    ]


def loaded_from(checkout: Path, env: dict[str, str], cwd: Path) -> str:
    """Where `import service` resolves with this env and cwd; refuses any other checkout.

    The virtualenv has the package installed editable from one checkout; PYTHONPATH must win
    over it, or "before" would silently measure the current code.
    """
    found = subprocess.run(
        [sys.executable, "-c", "import service; print(service.__file__)"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    path = Path(found.stdout.strip()).resolve()
    if found.returncode != 0 or not path.is_relative_to(checkout):
        raise SystemExit(
            f"the service would load {path or found.stderr.strip()}, not the code in {checkout}"
        )
    return str(path)


class Comparison:
    """Starts every system, seeds it, and measures the rounds."""

    def __init__(self, args: argparse.Namespace, stack: ExitStack, tmp: Path) -> None:
        self.args = args
        self.stack = stack
        self.tmp = tmp
        self.systems: list[System] = []
        self.deadline = Deadline(args.max_seconds)

    def _bench_args(self, url: str | None) -> argparse.Namespace:
        return argparse.Namespace(**{**vars(self.args), "mongodb_url": url, "profile": None})

    def _dir(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir()
        return path

    def _started(self, service: Service) -> Service:
        self.stack.callback(service.stop)
        service.start()
        return service

    def add_service(self, name: str, title: str, checkout: Path, workers: int) -> None:
        """The service of a checkout on its own embedded SecantusDB, seeded."""
        home = self._dir(name)
        server = self.stack.enter_context(
            EmbeddedDatabase(home / "db", sync_on_commit=self.args.sync_on_commit)
        )
        client: MongoClient[dict[str, Any]] = MongoClient(server.url, tz_aware=True)
        self.stack.callback(client.close)
        bench = Bench(self._bench_args(server.url), client[self.args.db_name], server.pid, home)
        env = bench.service_env(secrets.token_urlsafe(48))
        env["PYTHONPATH"] = str(checkout)
        source = loaded_from(checkout, env, home)
        service = Service(workers=workers, env=env, log_path=home / "service.log")
        logger.info("starting %s (%s, %d worker(s))", name, source, workers)
        self._started(service)
        info: dict[str, Any] = {
            "checkout": str(checkout),
            "commit": _git_commit(checkout),
            "loaded_from": source,
            "workers": workers,
        }

        def seed() -> None:
            bench.seed_data(service, self.deadline)
            info["seeding"] = bench.seeding

        ops = self.args.ops if workers == 1 else [op for op in ("me",) if op in self.args.ops]
        system = System(name, title, ops, service, bench, info, self.args.concurrency, seed)
        self.systems.append(system)

    def add_bare(self) -> None:
        home = self._dir("bare")
        bench = Bench(self._bench_args(None), None, None, home)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        service = Service(
            workers=1,
            env=env,
            log_path=home / "server.log",
            command=_uvicorn("bench.bare:app"),
            health_path="/health",
        )
        self._started(service)
        bench.files["1"] = wrk.write_requests(
            home / "health.tsv", [wrk.RequestLine("GET", "/health")]
        )
        self.systems.append(
            System(
                "bare",
                "bench/bare.py (GET /health)",
                ["health"],
                service,
                bench,
                {"app": "bench.bare:app", "workers": 1},
                self.args.concurrency,
            )
        )

    def add_tutorial(self) -> None:
        home = self._dir("tutorial")
        db_path = home / "tutorial.db"
        bench = Bench(self._bench_args(None), None, None, home)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TUTORIAL_DATABASE_URL": f"sqlite:///{db_path}",
            "TUTORIAL_SECRET_KEY": secrets.token_urlsafe(48),
        }
        service = Service(
            workers=1,
            env=env,
            log_path=home / "server.log",
            command=_uvicorn("bench.tutorial.app:app"),
        )
        logger.info("starting the tutorial stack")
        self._started(service)
        info: dict[str, Any] = {"app": "bench.tutorial.app:app", "workers": 1}

        def seed() -> None:
            readers, writers, seeding = tutorial_seed.seed_all(
                service.base_url,
                db_path,
                readers=self.args.readers,
                writers=self.args.writers,
                todos_per_user=self.args.todos_per_user,
            )
            bench.seeding = info["seeding"] = seeding
            bench.write_request_files(readers, writers)
            logger.info("seeded tutorial %s", seeding)

        ops = [op for op in self.args.ops if op != "health"]
        title = "FastAPI tutorial stack (sync routes, SQLAlchemy, SQLite file)"
        system = System("tutorial", title, ops, service, bench, info, self.args.concurrency, seed)
        self.systems.append(system)

    def seed_all(self) -> None:
        """Seeds every server at once. Seeding is mostly logins, which wait on each server's
        one password-hashing thread: side by side they take little more than the slowest."""
        seeders = [s.seed for s in self.systems if s.seed is not None]
        with ThreadPoolExecutor(max_workers=max(1, len(seeders))) as pool:
            for future in [pool.submit(seeder) for seeder in seeders]:
                future.result()

    def idle_cpu(self, seconds: float = 3.0) -> dict[str, float]:
        """Each server's (and its database's) CPU while nothing is sent: the background every
        measurement of another server runs beside, in % of one core."""
        before = {s.name: s.service.cpu() + (s.bench.db_cpu() or 0.0) for s in self.systems}
        time.sleep(seconds)
        return {
            s.name: round(
                (s.service.cpu() + (s.bench.db_cpu() or 0.0) - before[s.name]) * 100 / seconds, 1
            )
            for s in self.systems
        }

    def measure_rounds(self) -> list[dict[str, Any]]:
        for system in self.systems:
            system.bench.label = f"{system.name:<10} "
        records: list[dict[str, Any]] = []
        for number in range(1, self.args.rounds + 1):
            for op in self.args.ops:
                having = [s for s in self.systems if op in s.ops]
                shift = (number - 1) % len(having) if having else 0
                for system in having[shift:] + having[:shift]:
                    self.deadline.check(f"round {number}, {op} of {system.name}")
                    key = OP_FILES[op]
                    system.bench.warm_up(system.service, key, system.concurrency)
                    record = system.bench.measure(
                        system.service,
                        op,
                        system.concurrency,
                        phase=f"round{number}",
                        file_key=key,
                    )
                    record.update(system=system.name, op=op, round=number)
                    records.append(record)
        return records

    def stop_all(self) -> None:
        for system in self.systems:
            system.service.stop()


def run_page_sizes(args: argparse.Namespace) -> dict[str, Any] | None:
    """bench/page_sizes.py of the current checkout (another helper's script), if present."""
    script = args.current / "bench" / "page_sizes.py"
    if not args.page_sizes or not script.exists():
        return None
    command = [sys.executable, "-m", "bench.page_sizes", *shlex.split(args.page_sizes_args)]
    logger.info("running %s", shlex.join(command))
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(args.current)}
    try:
        done = subprocess.run(
            command,
            cwd=args.current,
            env=env,
            capture_output=True,
            text=True,
            timeout=args.page_sizes_timeout,
            check=False,
        )
        returncode: int | None = done.returncode
        stdout, stderr = done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        returncode = None
        stdout = expired.stdout.decode() if isinstance(expired.stdout, bytes) else ""
        stderr = f"timed out after {args.page_sizes_timeout} s"
    return {
        "command": shlex.join(["python", "-m", "bench.page_sizes", *command[3:]]),
        "returncode": returncode,
        "seconds": round(time.monotonic() - started, 1),
        "stdout_tail": stdout.splitlines()[-80:],
        "stderr_tail": stderr.splitlines()[-30:],
    }


def _tutorial_versions() -> dict[str, str]:
    try:
        return {"sqlalchemy": metadata.version("sqlalchemy")}
    except metadata.PackageNotFoundError:
        return {}


def _default_name(commit: str) -> str:
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    return f"{date}-compare-{commit.split('+')[0]}"


def run(args: argparse.Namespace) -> Path:
    """The whole comparison; results are written even when it is cut short (marked partial)."""
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    load_before = procstat.loadavg()
    wrk.executable()  # fail early when wrk is missing
    commit = _git_commit(args.current)
    records: list[dict[str, Any]] = []
    systems: list[System] = []
    page_sizes: dict[str, Any] | None = None
    stopped_by: str | None = None
    setup_s: float | None = None
    idle: dict[str, float] = {}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="todo-compare-")))
        comparison = Comparison(args, stack, tmp)
        systems = comparison.systems
        try:
            comparison.add_bare()
            if args.before:
                comparison.add_service("before", "previous main", args.before, 1)
            comparison.add_service("current", "this code", args.current, 1)
            if args.tutorial:
                comparison.add_tutorial()
            if args.scale_workers > 1 and "me" in args.ops:
                name = f"current-{args.scale_workers}w"
                comparison.add_service(name, "this code", args.current, args.scale_workers)
            comparison.seed_all()
            setup_s = round(time.monotonic() - clock, 1)
            logger.info("all servers up and seeded in %.0f s; load %s", setup_s, procstat.loadavg())
            idle = comparison.idle_cpu()
            logger.info("idle CPU, %% of a core: %s", idle)
            records = comparison.measure_rounds()
            comparison.stop_all()
            page_sizes = run_page_sizes(args)
        except (KeyboardInterrupt, TimeoutError, RuntimeError) as exc:
            # RuntimeError: a server that did not start or refused its seeding (SeedError), wrk
            # failing (WrkError): what was measured until then is still written.
            stopped_by = f"{type(exc).__name__}: {exc}".rstrip(": ")
            logger.error("stopped early (%s); writing what was measured", stopped_by)
            records = [
                {**m, "system": s.name, "op": m["scenario"], "round": int(m["phase"][5:])}
                for s in systems
                for m in s.bench.measurements
            ]
    finished = dt.datetime.now(dt.UTC)
    document = {
        "name": args.name or _default_name(commit),
        "kind": "compare",
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - clock, 1),
        "setup_seconds": setup_s,
        "idle_cpu_percent": idle,
        "partial": stopped_by,
        "note": args.note,
        "command": shlex.join(["python", "-m", "bench.compare", *sys.argv[1:]]),
        "commit": commit,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": procstat.loadavg(),
        },
        "versions": {**_versions(), **_tutorial_versions()},
        "options": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
        },
        "database": f"each service on its own SecantusDB, file-backed, "
        f"sync_on_commit={args.sync_on_commit}; the tutorial on a SQLite file",
        "ops": {op: OPS[op] for op in args.ops},
        "systems": {
            s.name: {"title": s.title, "ops": s.ops, "concurrency": s.concurrency, **s.info}
            for s in systems
        },
        "measurements": records,
        "page_sizes": page_sizes,
    }
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{document['name']}.json"
    json_path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    if records:
        write_report(json_path)
    if stopped_by:
        raise KeyboardInterrupt
    return json_path


def main(argv: list[str] | None = None) -> int:
    return run_command(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
