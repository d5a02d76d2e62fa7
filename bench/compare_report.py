"""The markdown report and the PNG plot of one bench/compare.py run, from its JSON.

python -m bench.compare_report bench/results/<name>.json   # redo <name>.md and <name>.png

Every figure is a median over the interleaved rounds; a ratio between two servers is the
median of the per-round ratios (both measured in the same round, minutes apart at most), with
the lowest and highest round beside it so that the spread shows.
"""

import json
import statistics
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

OPS = {
    "health": "GET /api/health (bare: GET /health)",
    "me": "GET /api/me",
    "list": "GET /api/todos?limit=20 (200 todos/user)",
    "patch": "PATCH /api/todos/{id}",
    "create": "POST /api/todos",
}
# Issue 13's targets. Service CPU per request ÷ the bare app's, at most:
BARE_TARGETS = {"health": 1.3, "me": 4.0, "list": 15.0, "patch": 15.0, "create": 15.0}
# req/s of the current code ÷ the previous main's, at least:
BEFORE_TARGETS = {"me": 1.5, "list": 1.5, "create": 1.5}
# req/s of the current code ÷ the tutorial stack's: more than this on every operation.
TUTORIAL_TARGET = 1.0
# req/s of `GET /api/me` with N workers ÷ with 1, at least:
SCALING_TARGET = 1.6

Metric = Callable[[dict[str, Any]], float | None]


def rps(m: dict[str, Any]) -> float | None:
    return float(m["requests_per_s"])


def cpu(m: dict[str, Any]) -> float | None:
    value = m["service_cpu_per_request_ms"]
    return None if value is None else float(value)


class Compare:
    """Look-ups over one comparison's measurements."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.doc = document
        self.measurements: list[dict[str, Any]] = document["measurements"]
        self.systems: dict[str, dict[str, Any]] = document["systems"]

    def rounds(self, system: str, op: str) -> dict[int, dict[str, Any]]:
        return {m["round"]: m for m in self.measurements if m["system"] == system and m["op"] == op}

    def median(self, system: str, op: str, metric: Metric) -> float | None:
        values = [v for m in self.rounds(system, op).values() if (v := metric(m)) is not None]
        return statistics.median(values) if values else None

    def errors(self, system: str, op: str) -> int:
        return sum(m["error_count"] for m in self.rounds(system, op).values())

    def ratios(self, top: tuple[str, str], bottom: tuple[str, str], metric: Metric) -> list[float]:
        """metric(top) ÷ metric(bottom), per round in which both were measured."""
        upper, lower = self.rounds(*top), self.rounds(*bottom)
        found = []
        for number in sorted(upper.keys() & lower.keys()):
            a, b = metric(upper[number]), metric(lower[number])
            if a is not None and b:
                found.append(a / b)
        return found

    def scaled(self) -> str | None:
        return next((name for name in self.systems if name.startswith("current-")), None)


def _fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{suffix}"


def _spread(values: list[float], digits: int = 2) -> str:
    """The median ratio, and the range over rounds when there are several."""
    if not values:
        return "-"
    text = f"{statistics.median(values):.{digits}f}x"
    if len(values) > 1:
        text += f" ({min(values):.{digits}f}-{max(values):.{digits}f})"
    return text


def _verdict(
    values: list[float],
    at_least: float | None,
    at_most: float | None,
    errors: int = 0,
    *,
    strictly: bool = False,
) -> str:
    """Judged on the median of the per-round ratios; errors of the measured server beside it."""
    if not values:
        return "-"
    median = statistics.median(values)
    above = at_least is None or median > at_least or (not strictly and median == at_least)
    ok = above and (at_most is None or median <= at_most)
    verdict = "**met**" if ok else "**not met**"
    return verdict + (f" ({errors} errors)" if errors else "")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def bare_table(run: Compare) -> list[str]:
    rows = []
    for op, limit in BARE_TARGETS.items():
        if op not in run.doc["ops"]:
            continue
        current = run.ratios(("current", op), ("bare", "health"), cpu)
        before = run.ratios(("before", op), ("bare", "health"), cpu)
        rows.append(
            [
                OPS[op],
                _fmt(run.median("current", op, cpu), 3),
                _spread(current),
                f"≤ {limit:g}x",
                _verdict(current, None, limit, run.errors("current", op)),
                _spread(before) if before else "-",
            ]
        )
    bare = _fmt(run.median("bare", "health", cpu), 3)
    return [
        f"### Service CPU per request ÷ the bare app's (`GET /health`: {bare} ms)",
        "",
        *_table(["operation", "CPU/req ms", "x bare", "target", "verdict", "before: x bare"], rows),
    ]


def before_table(run: Compare) -> list[str]:
    if "before" not in run.systems:
        return ["### Against the previous main", "", "Not measured (no `--before`)."]
    rows = []
    for op in run.doc["ops"]:
        speedup = run.ratios(("current", op), ("before", op), rps)
        cpu_drop = run.ratios(("before", op), ("current", op), cpu)
        limit = BEFORE_TARGETS.get(op)
        rows.append(
            [
                OPS[op],
                _fmt(run.median("before", op, rps)),
                _fmt(run.median("current", op, rps)),
                _spread(speedup),
                "-" if limit is None else f"≥ {limit:g}x",
                "-" if limit is None else _verdict(speedup, limit, None, run.errors("current", op)),
                _fmt(run.median("before", op, cpu), 3),
                _fmt(run.median("current", op, cpu), 3),
                _spread(cpu_drop),
            ]
        )
    before = run.systems["before"]
    return [
        f"### Against the previous main (`{before['commit']}`), req/s",
        "",
        *_table(
            [
                "operation",
                "before req/s",
                "current req/s",
                "current ÷ before",
                "target",
                "verdict",
                "before CPU/req ms",
                "current CPU/req ms",
                "CPU/req before ÷ current",
            ],
            rows,
        ),
    ]


def tutorial_table(run: Compare) -> list[str]:
    if "tutorial" not in run.systems:
        return ["### Against the tutorial stack", "", "Not measured (`--no-tutorial`)."]
    rows = []
    for op in run.systems["tutorial"]["ops"]:
        faster = run.ratios(("current", op), ("tutorial", op), rps)
        rows.append(
            [
                OPS[op],
                _fmt(run.median("tutorial", op, rps)),
                _fmt(run.median("current", op, rps)),
                _spread(faster),
                f"> {TUTORIAL_TARGET:g}x",
                _verdict(faster, TUTORIAL_TARGET, None, run.errors("current", op), strictly=True),
                _fmt(run.median("tutorial", op, cpu), 3),
                _fmt(run.median("current", op, cpu), 3),
                str(run.errors("tutorial", op)),
            ]
        )
    return [
        "### Against the tutorial stack (sync routes, SQLAlchemy ORM, SQLite file), req/s",
        "",
        *_table(
            [
                "operation",
                "tutorial req/s",
                "current req/s",
                "current ÷ tutorial",
                "target",
                "verdict",
                "tutorial CPU/req ms",
                "current CPU/req ms",
                "tutorial errors",
            ],
            rows,
        ),
    ]


def scaling_table(run: Compare) -> list[str]:
    scaled = run.scaled()
    if scaled is None:
        return ["### Workers", "", "Not measured (`--scale-workers 0`)."]
    workers = run.systems[scaled]["workers"]
    speedup = run.ratios((scaled, "me"), ("current", "me"), rps)
    row = [
        OPS["me"],
        _fmt(run.median("current", "me", rps)),
        _fmt(run.median(scaled, "me", rps)),
        _spread(speedup),
        f"≥ {SCALING_TARGET:g}x",
        _verdict(speedup, SCALING_TARGET, None, run.errors(scaled, "me")),
        _fmt(run.median(scaled, "me", cpu), 3),
    ]
    return [
        f"### {workers} workers against 1, req/s",
        "",
        *_table(
            [
                "operation",
                "1 worker",
                f"{workers} workers",
                "ratio",
                "target",
                "verdict",
                f"CPU/req ms, {workers} workers",
            ],
            [row],
        ),
    ]


def measurement_table(run: Compare) -> list[str]:
    rows = []
    for name in run.systems:
        for op in OPS:
            found = run.rounds(name, op)
            if not found:
                continue
            per_round = " / ".join(_fmt(found[n]["requests_per_s"], 0) for n in sorted(found))

            def median_of(key: str, inner: str | None = None, found: Any = found) -> float | None:
                values = [
                    (m[key][inner] if inner else m[key])
                    for m in found.values()
                    if m[key] is not None
                ]
                return statistics.median(values) if values else None

            rows.append(
                [
                    name,
                    op,
                    _fmt(median_of("requests_per_s")),
                    per_round,
                    _fmt(median_of("latency_ms", "p50"), 2),
                    _fmt(median_of("latency_ms", "p99"), 2),
                    _fmt(median_of("service_cpu_per_request_ms"), 3),
                    _fmt(median_of("db_cpu_per_request_ms"), 3),
                    str(run.errors(name, op)),
                ]
            )
    return _table(
        [
            "server",
            "operation",
            "req/s",
            "req/s by round",
            "p50 ms",
            "p99 ms",
            "CPU/req ms",
            "DB CPU/req ms",
            "errors",
        ],
        rows,
    )


def page_sizes_section(run: Compare) -> list[str]:
    found = run.doc.get("page_sizes")
    if not found:
        return [
            "## Page sizes",
            "",
            "Not run (no bench/page_sizes.py in the measured checkout, or `--no-page-sizes`).",
        ]
    return [
        "## Page sizes (bench/page_sizes.py)",
        "",
        f"`{found['command']}`: exit {found['returncode']} after {found['seconds']} s; "
        "the end of its output:",
        "",
        "```",
        *found["stdout_tail"],
        *(["--- stderr ---", *found["stderr_tail"]] if found["returncode"] else []),
        "```",
    ]


def markdown(run: Compare, png_name: str) -> str:
    doc = run.doc
    options = doc["options"]
    systems = [
        f"- **{name}**: {info['title']}"
        + (f", `{info['commit']}` loaded from `{info['loaded_from']}`" if "commit" in info else "")
        + (f", {info['workers']} workers" if info.get("workers", 1) > 1 else "")
        for name, info in run.systems.items()
    ]
    versions = ", ".join(f"{name} {version}" for name, version in doc["versions"].items())
    lines = [
        f"# Comparison {doc['name']}",
        "",
        f"Run {doc['started']} → {doc['finished']} ({doc['seconds']:.0f} s, of which setup "
        f"{doc['setup_seconds']} s) on commit `{doc['commit']}`, {doc['machine']['cpus']} CPUs, "
        f"load average before {doc['machine']['loadavg_before']}, after "
        f"{doc['machine']['loadavg_after']}. Command: `{doc['command']}`.",
        "",
    ]
    if doc.get("partial"):
        lines += [f"> **Partial run**, stopped early ({doc['partial']}).", ""]
    if doc["note"]:
        lines += [f"> **Note:** {doc['note']}", ""]
    lines += [
        f"Versions: {versions}. Database: {doc['database']}.",
        "",
        "Idle CPU of each server with its database before the rounds (% of one core; the "
        "background beside every measurement): "
        + (", ".join(f"{k} {v:g} %" for k, v in doc.get("idle_cpu_percent", {}).items()) or "-")
        + ".",
        "",
        "Servers, all up at once, each seeded with "
        f"{options['readers']} users of {options['todos_per_user']} todos and "
        f"{options['writers']} writers:",
        *systems,
        "",
        f"{options['rounds']} interleaved rounds; in each, every operation runs "
        f"{options['duration']:g} s of wrk -c{options['concurrency']} (after "
        f"{options['warmup']:g} s of warm-up) on every server that has it, a different server "
        "first each round. CPU/req is utime+stime of the server's processes (from /proc) ÷ the "
        "requests wrk completed. Figures are medians over rounds; a ratio is the median of the "
        "per-round ratios, (lowest-highest round) beside it.",
        "",
        f"![CPU per request and req/s by server]({png_name})",
        "",
        "## Targets",
        "",
        *bare_table(run),
        "",
        *before_table(run),
        "",
        *tutorial_table(run),
        "",
        *scaling_table(run),
        "",
        "## Every measurement (medians over rounds)",
        "",
        *measurement_table(run),
        "",
        *page_sizes_section(run),
    ]
    return "\n".join(lines) + "\n"


def plot(run: Compare, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    ops = list(run.doc["ops"])
    figure, axes = plt.subplots(1, 3, figsize=(17, 5.5))
    positions = range(len(ops))

    axis = axes[0]
    services = [name for name in ("before", "current") if name in run.systems]
    width = 0.8 / max(len(services), 1)
    for i, name in enumerate(services):
        values = [
            statistics.median(r) if (r := run.ratios((name, op), ("bare", "health"), cpu)) else 0
            for op in ops
        ]
        axis.bar(
            [x + (i - (len(services) - 1) / 2) * width for x in positions],
            values,
            width,
            label=name,
        )
    for x, op in enumerate(ops):
        if op in BARE_TARGETS:
            axis.hlines(BARE_TARGETS[op], x - 0.45, x + 0.45, colors="red", linewidth=1.5)
    axis.plot([], [], color="red", label="target (at most)")
    axis.set_yscale("log")
    axis.set_title("service CPU per request ÷ bare app's")

    axis = axes[1]
    servers = [name for name in ("before", "current", "tutorial") if name in run.systems]
    width = 0.8 / max(len(servers), 1)
    for i, server in enumerate(servers):
        values = [run.median(server, op, rps) or 0 for op in ops]
        axis.bar(
            [x + (i - (len(servers) - 1) / 2) * width for x in positions],
            values,
            width,
            label=server,
        )
    axis.set_yscale("log")
    axis.set_title(f"req/s (wrk -c{run.doc['options']['concurrency']}, median of rounds)")

    axis = axes[2]
    others = [name for name in ("before", "tutorial") if name in run.systems]
    for i, other in enumerate(others):
        for x, op in enumerate(ops):
            values = run.ratios(("current", op), (other, op), rps)
            axis.scatter(
                [x + (i - 0.5) * 0.25] * len(values),
                values,
                s=18,
                color=f"C{i}",
                label=f"current ÷ {other}" if x == 0 else None,
            )
    scaled = run.scaled()
    if scaled:
        values = run.ratios((scaled, "me"), ("current", "me"), rps)
        x = ops.index("me") if "me" in ops else 0
        axis.scatter(
            [x + 0.3] * len(values),
            values,
            s=18,
            marker="^",
            color="C2",
            label=f"{scaled} ÷ 1 worker",
        )
    axis.axhline(BEFORE_TARGETS["me"], color="red", linewidth=1, label="1.5x (before)")
    axis.axhline(TUTORIAL_TARGET, color="grey", linewidth=1, linestyle="--", label="1x (tutorial)")
    axis.set_title("req/s ratios, one point per round")

    for axis in axes:
        if axis.get_yscale() == "log":
            axis.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            axis.yaxis.set_minor_formatter(ticker.NullFormatter())
        axis.set_xticks(list(positions), ops)
        axis.grid(axis="y", alpha=0.3)
        axis.legend(fontsize=8)
    note = run.doc["note"]
    figure.suptitle(
        f"todo-service comparison {run.doc['name']} ({run.doc['commit']})"
        + ("\n" + textwrap.fill(note, 150) if note else ""),
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def write_report(json_path: Path) -> tuple[Path, Path]:
    """Write <name>.md and <name>.png beside <name>.json."""
    run = Compare(json.loads(json_path.read_text(encoding="utf-8")))
    png, md = json_path.with_suffix(".png"), json_path.with_suffix(".md")
    plot(run, png)
    md.write_text(markdown(run, png.name), encoding="utf-8")
    return md, png


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        for written in write_report(Path(argument)):
            print(written)
