"""A bench's working directory after its run: the servers' data goes, the logs stay.

A run of ``http_surge.py`` left 200-300 MB behind (a PostgreSQL cluster, SQLite databases,
Redis's files), and so did most benches here: a day of runs filled the disk, and a run's
PostgreSQL stopped mid-row with ``PANIC: No space left on device`` (6 December 2026,
bench/README.md, branch pgrow). The logs a run names at its end (``server logs in ...``) and
the files it wrote beside them are small, and kept.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

__all__ = ["tidy"]


def tidy(work: Path | str) -> None:
    """Delete everything under ``work`` but its own files and the ``*.log`` files below it;
    call it once the run's servers have stopped."""
    work = Path(work)
    if not work.is_dir():
        return
    # deepest first, so that a directory is empty (or holds only logs) when its turn comes
    for path in sorted(work.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty: a log below keeps it
        elif path.parent != work and path.suffix != ".log":
            path.unlink(missing_ok=True)
