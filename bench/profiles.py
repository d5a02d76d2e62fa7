"""Summaries of py-spy's collapsed stacks (`python -m bench.run --profile DIR`).

python -m bench.profiles DIR [TOP]   # per file: the functions holding the most samples
"""

import sys
from collections import Counter
from pathlib import Path


def inclusive(path: Path) -> tuple[int, Counter[str]]:
    """Total samples, and for each function the samples whose stack contains it."""
    total = 0
    counts: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        total += n
        frames = {frame.split(" (")[0] + " (" + _package(frame) + ")" for frame in stack.split(";")}
        for frame in frames:
            counts[frame] += n
    return total, counts


def _package(frame: str) -> str:
    # py-spy writes "function (path/to/module.py)"; keep the top-level package of the module.
    module = frame.rpartition("(")[2].rstrip(")")
    parts = Path(module).parts
    for marker in ("site-packages", "lib"):
        if marker in parts:
            parts = parts[parts.index(marker) + 1 :]
    return "/".join(parts[-2:]) if parts else module


def main(argv: list[str]) -> int:
    directory = Path(argv[0])
    top = int(argv[1]) if len(argv) > 1 else 25
    for path in sorted(directory.glob("*.txt")):
        total, counts = inclusive(path)
        print(f"## {path.stem}: {total} on-CPU samples")
        for frame, n in counts.most_common(top):
            print(f"{100 * n / max(total, 1):5.1f}%  {frame}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
