"""Fold py-spy's raw stacks (``--format raw``) into a short text: the functions where the
served process spends its samples, by self time and by inclusive time, so a profile kept in
``bench/profiles/`` stays small and readable in a diff."""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^)]*?)(?::\d+)?\)$")


def _name(frame: str) -> str:
    found = _FRAME.match(frame.strip())
    if found is None:
        return frame.strip()
    path = found["file"]
    for marker in ("site-packages/", "lib/python3.11/", "wt-surge/", "wt-surge2/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{found['function']} ({path})"


def summarise(folded: Path, top: int) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_name(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"{folded.stem}: {total} samples", "", "self %  function"]
    lines += [f"{100 * n / total:6.1f}  {f}" for f, n in own.most_common(top)]
    lines += ["", "total %  function"]
    lines += [f"{100 * n / total:7.1f}  {f}" for f, n in inclusive.most_common(top * 2)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folded", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=25)
    options = parser.parse_args()
    for path in options.folded:
        path.with_suffix(".txt").write_text(summarise(path, options.top))


if __name__ == "__main__":
    main()
