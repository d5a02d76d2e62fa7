"""The markdown report and the PNG plot of one bench run, from its JSON.

python -m bench.report bench/results/<name>.json   # redo <name>.md and <name>.png
"""

import json
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

FLOOR = "1"
ORDER = ["1", "2", "3", "3m", "4", "5", "6", "7", "8"]
# Service CPU per request as a multiple of the floor's (scenario 1), from the targets.
CPU_TARGETS = {"2": 2.0, "3": 3.0, "3m": 3.0, "4": 3.0, "5": 3.0}
STORM_P99_TARGET = 3.0
BIG_COLLECTION_P50_TARGET = 1.3
RSS_TARGET_MB = 120.0
RSS_GROWTH_TOLERANCE_MB = 2.0


class Run:
    """Look-ups over one run's measurements."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.doc = document
        self.measurements: list[dict[str, Any]] = document["measurements"]
        self.main_workers: int = document["options"]["workers"]

    def get(self, phase: str, scenario: str, concurrency: int) -> dict[str, Any] | None:
        for m in self.measurements:
            if (m["phase"], m["scenario"], m["concurrency"]) == (phase, scenario, concurrency):
                return m
        return None

    def levels(self, phase: str, scenario: str | None = None) -> list[int]:
        return sorted(
            {
                m["concurrency"]
                for m in self.measurements
                if m["phase"] == phase and (scenario is None or m["scenario"] == scenario)
            }
        )

    def scenarios(self, phase: str) -> list[str]:
        present = {m["scenario"] for m in self.measurements if m["phase"] == phase}
        return [key for key in ORDER if key in present]

    def phases(self) -> list[str]:
        return list(dict.fromkeys(m["phase"] for m in self.measurements))

    def cpu_ratio(self, phase: str, scenario: str, concurrency: int) -> float | None:
        measured, floor = (
            self.get(phase, scenario, concurrency),
            self.get(phase, FLOOR, concurrency),
        )
        if not measured or not floor:
            return None
        cpu, floor_cpu = measured["service_cpu_per_request_ms"], floor["service_cpu_per_request_ms"]
        return cpu / floor_cpu if cpu is not None and floor_cpu else None

    def ratio(self, phase: str, scenario: str, concurrency: int, key: str) -> float | None:
        """A latency percentile ("p50", "p99") or "requests_per_s" relative to the floor."""
        measured, floor = (
            self.get(phase, scenario, concurrency),
            self.get(phase, FLOOR, concurrency),
        )
        if not measured or not floor:
            return None
        value, base = _value(measured, key), _value(floor, key)
        return value / base if base else None


def _value(measurement: dict[str, Any], key: str) -> float:
    if key == "requests_per_s":
        return float(measurement["requests_per_s"])
    return float(measurement["latency_ms"][key])


def _fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("**met**" if ok else "**not met**")


def measurement_table(run: Run, phase: str) -> list[str]:
    header = [
        "scenario",
        "c",
        "req/s",
        "x floor",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99 x floor",
        "errors",
        "service CPU/req ms",
        "x floor",
        "DB CPU/req ms",
        "RSS MB",
    ]
    rows = []
    for scenario in run.scenarios(phase):
        for c in run.levels(phase, scenario):
            m = run.get(phase, scenario, c)
            assert m is not None
            rows.append(
                [
                    scenario,
                    str(c),
                    _fmt(m["requests_per_s"]),
                    _fmt(run.ratio(phase, scenario, c, "requests_per_s"), 2, "x"),
                    _fmt(m["latency_ms"]["p50"], 2),
                    _fmt(m["latency_ms"]["p90"], 2),
                    _fmt(m["latency_ms"]["p99"], 2),
                    _fmt(run.ratio(phase, scenario, c, "p99"), 1, "x"),
                    str(m["error_count"]),
                    _fmt(m["service_cpu_per_request_ms"], 3),
                    _fmt(run.cpu_ratio(phase, scenario, c), 2, "x"),
                    _fmt(m["db_cpu_per_request_ms"], 3),
                    _fmt(m["rss_mb"]),
                ]
            )
    return _table(header, rows)


def targets(run: Run) -> list[str]:
    rows: list[list[str]] = []
    for scenario, limit in CPU_TARGETS.items():
        ratios = {c: run.cpu_ratio("main", scenario, c) for c in run.levels("main", scenario)}
        known = [r for r in ratios.values() if r is not None]
        rows.append(
            [
                f"{run.doc['scenarios'][scenario]}: service CPU/request ≤ {limit:g}x floor",
                ", ".join(f"c={c}: {_fmt(r, 2, 'x')}" for c, r in ratios.items()),
                _verdict(all(r <= limit for r in known) if known else None),
            ]
        )
    storm = {}
    for c in run.levels("main", "7"):
        with_logins, without = run.get("main", "7", c), run.get("main", "2", c)
        if with_logins and without and without["latency_ms"]["p99"]:
            storm[c] = with_logins["latency_ms"]["p99"] / without["latency_ms"]["p99"]
    rows.append(
        [
            f"login storm: GET /api/me p99 ≤ {STORM_P99_TARGET:g}x its p99 without logins",
            ", ".join(f"c={c}: {r:.2f}x" for c, r in storm.items()) or "-",
            _verdict(all(r <= STORM_P99_TARGET for r in storm.values()) if storm else None),
        ]
    )
    big = {}
    for c in run.levels("main", "8"):
        large, small = run.get("main", "8", c), run.get("main", "3", c)
        if large and small and small["latency_ms"]["p50"]:
            big[c] = large["latency_ms"]["p50"] / small["latency_ms"]["p50"]
    info = run.doc.get("scenario_8") or {}
    size = f"{info.get('reached_todos', 0):,} vs {run.doc['seeding'].get('todos', 0):,} todos"
    rows.append(
        [
            f"list p50 with a big collection ≤ {BIG_COLLECTION_P50_TARGET:g}x ({size})",
            ", ".join(f"c={c}: {r:.2f}x" for c, r in big.items()) or "-",
            _verdict(all(r <= BIG_COLLECTION_P50_TARGET for r in big.values()) if big else None),
        ]
    )
    memory = run.doc["memory"]
    if memory:
        highest = max(entry["rss_mb"] for entry in memory)
        rows.append(
            [
                f"service RSS after the run ≤ {RSS_TARGET_MB:g} MB per worker",
                f"largest worker {highest:.1f} MB",
                _verdict(highest <= RSS_TARGET_MB),
            ]
        )
        same = [e for e in memory if e["workers"] == run.main_workers]
        passes = [e for e in same if e["when"].startswith(("after the main", "after repeat"))]
        if len(passes) > 1:
            growth = passes[-1]["rss_mb"] - passes[0]["rss_mb"]
            rows.append(
                [
                    f"RSS not growing between repeated passes (≤ {RSS_GROWTH_TOLERANCE_MB:g} MB)",
                    " → ".join(f"{e['rss_mb']:.1f}" for e in passes) + f" MB ({growth:+.1f})",
                    _verdict(growth <= RSS_GROWTH_TOLERANCE_MB),
                ]
            )
    return _table(["target", "measured", "verdict"], rows)


def logins_section(run: Run) -> list[str]:
    rows = []
    for c in run.levels("main", "6"):
        m = run.get("main", "6", c)
        assert m is not None
        rows.append(
            [
                str(c),
                _fmt(m["requests_per_s"]),
                _fmt(m["latency_ms"]["p50"]),
                _fmt(m["latency_ms"]["p99"]),
                str(m["error_count"]),
            ]
        )
    storm_rows = []
    for c in run.levels("main", "7"):
        m, alone = run.get("main", "7", c), run.get("main", "2", c)
        assert m is not None
        logins = m["logins"]
        storm_rows.append(
            [
                str(c),
                _fmt(alone["latency_ms"]["p50"] if alone else None, 2),
                _fmt(m["latency_ms"]["p50"], 2),
                _fmt(alone["latency_ms"]["p99"] if alone else None, 2),
                _fmt(m["latency_ms"]["p99"], 2),
                _fmt(m["requests_per_s"]),
                f"{logins['requests_per_s']:.1f} (c={logins['connections']})",
                str(m["error_count"] + sum(logins["errors"].values())),
            ]
        )
    lines = ["### Logins (scenario 6)", ""]
    lines += _table(["c", "logins/s", "p50 ms", "p99 ms", "errors"], rows)
    lines += ["", "### GET /api/me during a login storm (scenario 7)", ""]
    lines += _table(
        [
            "c (me)",
            "p50 alone",
            "p50 in storm",
            "p99 alone",
            "p99 in storm",
            "me req/s in storm",
            "logins/s",
            "errors",
        ],
        storm_rows,
    )
    return lines


def scaling_section(run: Run) -> list[str]:
    if "scaling" not in run.phases():
        return []
    workers = next(m["workers"] for m in run.measurements if m["phase"] == "scaling")
    rows = []
    for scenario in run.scenarios("scaling"):
        for c in run.levels("scaling", scenario):
            one, two = run.get("main", scenario, c), run.get("scaling", scenario, c)
            if not one or not two:
                continue
            speedup = (
                two["requests_per_s"] / one["requests_per_s"] if one["requests_per_s"] else None
            )
            rows.append(
                [
                    scenario,
                    str(c),
                    _fmt(one["requests_per_s"]),
                    _fmt(two["requests_per_s"]),
                    _fmt(speedup, 2, "x"),
                    _fmt(one["service_cpu_per_request_ms"], 3),
                    _fmt(two["service_cpu_per_request_ms"], 3),
                    _fmt(two["latency_ms"]["p99"], 2),
                    str(two["error_count"]),
                ]
            )
    header = [
        "scenario",
        "c",
        f"req/s, {run.main_workers} worker(s)",
        f"req/s, {workers} workers",
        "speed-up",
        "CPU/req before",
        "CPU/req after",
        f"p99 ms, {workers} workers",
        "errors",
    ]
    return [f"## Scaling: {run.main_workers} → {workers} workers", "", *_table(header, rows)]


def markdown(run: Run, png_name: str) -> str:
    doc = run.doc
    lines = [
        f"# Benchmark {doc['name']}",
        "",
        f"Run {doc['started']} → {doc['finished']} on commit `{doc['commit']}`, "
        f"{doc['machine']['cpus']} CPUs, load average before {doc['machine']['loadavg_before']}"
        f", after {doc['machine']['loadavg_after']}.",
        f"Database: {doc['database']}. Command: `{doc['command']}`.",
        "",
    ]
    if doc.get("partial"):
        lines += [f"> **Partial run**, stopped early ({doc['partial']}).", ""]
    if doc["note"]:
        lines += [f"> **Note:** {doc['note']}", ""]
    versions = ", ".join(f"{name} {version}" for name, version in doc["versions"].items())
    seeding = doc["seeding"]
    lines += [
        f"Versions: {versions}.",
        "",
        f"Seeded {seeding.get('readers')} readers with {seeding.get('todos_per_reader')} todos "
        f"each and {seeding.get('writers')} writers ({seeding.get('todos'):,} todos) in "
        f"{seeding.get('seconds')} s. Every wrk run lasts {doc['options']['duration']} s after a "
        f"{doc['options']['warmup']} s warm-up per scenario; *c* is wrk's connection count. "
        "*x floor* is relative to scenario 1 (`GET /api/health`) at the same *c* in the same run. "
        "CPU/req is utime+stime of the service's processes (summed over workers) or of the "
        "database process, from /proc, divided by the requests wrk completed.",
        "",
        f"![req/s, p99 and CPU per request by scenario]({png_name})",
        "",
        "## Targets",
        "",
        *targets(run),
        "",
        f"## Measurements ({run.main_workers} worker(s))",
        "",
        *measurement_table(run, "main"),
        "",
        *logins_section(run),
        "",
    ]
    big = doc.get("scenario_8")
    if big:
        lines += [
            "### Big collection (scenario 8)",
            "",
            f"Filled to {big['reached_todos']:,} todos of {big['requested_todos']:,} requested "
            f"in {big['fill_seconds']} s ({big['fill_docs_per_s']:,} docs/s"
            f"{'' if big['complete'] else ', stopped by --fill-budget'}); scenario 8 is "
            f"scenario 3's request at c = {big['concurrency']}, compared with scenario 3 "
            f"measured at {seeding.get('todos'):,} todos.",
            "",
        ]
    lines += [*scaling_section(run), ""]
    for phase in run.phases():
        if phase.startswith("repeat"):
            lines += [f"## Repeat pass ({phase})", "", *measurement_table(run, phase), ""]
    lines += ["## Memory", ""]
    lines += _table(
        ["when", "workers", "largest RSS MB", "largest peak RSS MB", "processes"],
        (
            [
                e["when"],
                str(e["workers"]),
                _fmt(e["rss_mb"]),
                _fmt(e["peak_rss_mb"]),
                str(e["processes"]),
            ]
            for e in doc["memory"]
        ),
    )
    return "\n".join(lines) + "\n"


def plot(run: Run, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = run.scenarios("main")
    levels = run.levels("main")
    figure, axes = plt.subplots(2, 2, figsize=(14, 9))
    width = 0.8 / max(len(levels), 1)
    panels: list[tuple[Any, str, Callable[[dict[str, Any]], float | None], bool]] = [
        (axes[0][0], "requests per second", lambda m: m["requests_per_s"], True),
        (axes[0][1], "p99 latency (ms)", lambda m: m["latency_ms"]["p99"], True),
        (
            axes[1][0],
            "service CPU per request, x floor (scenario 1)",
            lambda m: run.cpu_ratio("main", m["scenario"], m["concurrency"]),
            True,
        ),
    ]
    for axis, title, value, log in panels:
        for i, c in enumerate(levels):
            xs, ys = [], []
            for x, scenario in enumerate(scenarios):
                m = run.get("main", scenario, c)
                v = value(m) if m else None
                if v is not None:
                    xs.append(x + (i - (len(levels) - 1) / 2) * width)
                    ys.append(v)
            axis.bar(xs, ys, width, label=f"c={c}")
        axis.set_xticks(range(len(scenarios)), scenarios)
        axis.set_xlabel("scenario")
        axis.set_title(title)
        if log:
            axis.set_yscale("log")
        axis.legend(fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    cpu_axis = axes[1][0]
    for x, scenario in enumerate(scenarios):
        if scenario in CPU_TARGETS:
            cpu_axis.hlines(CPU_TARGETS[scenario], x - 0.45, x + 0.45, colors="red", linewidth=1.5)
    cpu_axis.plot([], [], color="red", label="target")
    cpu_axis.legend(fontsize=8)

    axis = axes[1][1]
    if "scaling" in run.phases():
        scaled = run.scenarios("scaling")
        workers = next(m["workers"] for m in run.measurements if m["phase"] == "scaling")
        c = max(run.levels("scaling"))
        one = [run.get("main", s, c) for s in scaled]
        two = [run.get("scaling", s, c) for s in scaled]
        positions = range(len(scaled))
        axis.bar(
            [x - 0.2 for x in positions],
            [m["requests_per_s"] if m else 0 for m in one],
            0.4,
            label=f"{run.main_workers} worker(s)",
        )
        axis.bar(
            [x + 0.2 for x in positions],
            [m["requests_per_s"] if m else 0 for m in two],
            0.4,
            label=f"{workers} workers",
        )
        axis.set_xticks(list(positions), scaled)
        axis.set_yscale("log")
        axis.set_title(f"requests per second by worker count (c={c})")
        axis.set_xlabel("scenario")
        axis.legend(fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    else:
        axis.axis("off")
    note = run.doc["note"]
    figure.suptitle(
        f"todo-service benchmark {run.doc['name']} ({run.doc['commit']})"
        + ("\n" + textwrap.fill(note, 150) if note else ""),
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def write_report(json_path: Path) -> tuple[Path, Path]:
    """Write <name>.md and <name>.png beside <name>.json."""
    run = Run(json.loads(json_path.read_text(encoding="utf-8")))
    png = json_path.with_suffix(".png")
    md = json_path.with_suffix(".md")
    plot(run, png)
    md.write_text(markdown(run, png.name), encoding="utf-8")
    return md, png


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        for written in write_report(Path(argument)):
            print(written)
