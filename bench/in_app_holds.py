"""Holds sent to an app as ASGI calls in one process, for the benches that divide a process's
CPU time by its answers (``grant_cpu.py``, ``refusal_cpu.py``): no server, no socket, so what
they measure is the code of the tree under test, the same driver for every tree."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["child_result", "hold", "in_parallel", "seeded"]

ROOT = Path(__file__).resolve().parent.parent


async def hold(app: Any, token: str, body: bytes, n: int, statuses: Counter[int]) -> None:
    """``POST /api/v1/holds`` with ``body`` as the ``n``-th client of wrk's addresses
    (bench/wrk/surge.lua) would send it; its status counted in ``statuses``."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/holds",
        "raw_path": b"/api/v1/holds",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {token}".encode()),
            (b"idempotency-key", f"cpu-{n}-{time.time_ns()}".encode()),
        ],
        "client": (f"10.{n % 250}.{(n // 250) % 8}.7", 40000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)  # a client that stays connected
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] += 1

    await app(scope, receive, send)


async def in_parallel(numbers: range, one: Callable[[int], Awaitable[None]]) -> None:
    """``one(n)`` for every number, 64 at a time (the benches' connections)."""
    queue = iter(numbers)

    async def worker() -> None:
        for n in queue:
            await one(n)

    await asyncio.gather(*(worker() for _ in range(64)))


def child_result(
    script: Path,
    spec: Path,
    tree: str,
    *,
    name: str,
    round_no: int,
    profile: Path | None,
    wrapper: Sequence[str] = (),
) -> dict[str, Any]:
    """Run ``script --child spec`` with ``tree`` first on its path (under py-spy if
    ``profile``: raw folded stacks there, named after the script, tree and round; after the
    ``wrapper`` command, such as ``strace``, if one is given) and return
    the JSON it prints after ``RESULT ``, with the round, the tree's name and the load average
    before it."""
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    command = [*wrapper, sys.executable, str(script), "--child", str(spec)]
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        folded = profile / f"{script.stem.replace('_', '-')}-{name}-{round_no}.folded"
        spy = [str(ROOT / ".venv" / "bin" / "py-spy")]
        spy += ["record", "--rate", "250", "--format", "raw", "--output", str(folded), "--"]
        command = [*spy, *command]
    done = subprocess.run(
        command,
        env=os.environ | {"PYTHONPATH": tree},
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(row for row in done.stdout.splitlines() if row.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result | {"round": round_no, "tree": name, "load": load}


@contextlib.contextmanager
def seeded(prefix: str) -> Iterator[tuple[dict[str, str], Any]]:
    """A PostgreSQL and a Redis of their own, seeded as ``http_surge`` seeds them (two days
    of the demo region, its accounts and tokens, a slot sold out): (the platform's
    environment, ``http_surge.Target``). Both are stopped at the end."""
    sys.path.insert(0, str(ROOT))
    from bench.http_surge import _environment, _free_port, _seed
    from bench.work_dirs import tidy
    from guahao.platform.embedded_redis import EmbeddedRedis
    from infra import local_postgres

    work = Path(tempfile.mkdtemp(prefix=prefix))
    work.chmod(0o755)  # the cluster runs as the postgres user when we are root
    pg_dir = work / "pg"
    local_postgres.start(pg_dir)
    redis = EmbeddedRedis(work / "redis", port=_free_port())
    redis.start()
    try:
        environ = _environment(work / "data", local_postgres.createdb(pg_dir, "guahao"), redis.url)
        (work / "files").mkdir()
        yield environ, asyncio.run(_seed(environ, work / "files", 2))
    finally:
        redis.stop()
        local_postgres.stop(pg_dir)
        tidy(work)
