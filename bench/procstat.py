"""CPU time and memory of a process tree, read from /proc (Linux only)."""

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()


def descendants(root: int) -> list[int]:
    """root and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry.name))[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    pending = [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (children not included)."""
    fields = _stat_fields(pid)
    # After the command name: state is index 0, so utime (field 14) is 11, stime (15) is 12.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(root: int) -> float:
    """utime + stime summed over root and its live descendants (e.g. uvicorn's workers)."""
    total = 0.0
    for pid in descendants(root):
        try:
            total += cpu_seconds(pid)
        except FileNotFoundError:
            continue
    return total


@dataclass(frozen=True)
class Memory:
    pid: int
    rss_mb: float
    peak_rss_mb: float


def memory(pid: int) -> Memory:
    """Resident set size now (VmRSS) and its high-water mark (VmHWM), in MiB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            values[key] = int(rest.split()[0]) / 1024  # kB
    return Memory(pid=pid, rss_mb=values.get("VmRSS", 0.0), peak_rss_mb=values.get("VmHWM", 0.0))


def tree_memory(root: int) -> list[Memory]:
    """Memory of root and each live descendant."""
    found: list[Memory] = []
    for pid in descendants(root):
        try:
            found.append(memory(pid))
        except FileNotFoundError:
            continue
    return found


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [float(value) for value in Path("/proc/loadavg").read_text().split()[:3]]
