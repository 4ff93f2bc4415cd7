"""CPU and SQL per step of the booking flow after the hold, for two code trees in turn
(issue 15).

Not a test. ``flow_surge.py`` runs the whole flow over HTTP with Locust; its rates move with
whatever else the shared machine runs, and it cannot say what one step costs. Here each tree's
app is driven in one process, without a server or a socket, as ``grant_cpu.py`` drives the
holds: ``--citizens`` citizens (accounts with a patient each, ``flow_surge``'s seeding on
PostgreSQL and Redis) go through the steps one step at a time, 64 at once (hold, choose
patient, submit with ``self_pay``, pay at the sandbox cashier, view), and for every step the
process's CPU time, the SQL statements, the transactions begun and the connections checked
out of the pool are divided by the answers. What the HTTP server adds is the same for both
trees and is left out.

    .venv/bin/python bench/flow_cpu.py --other /path/to/main-export --rounds 3

``--other`` is a tree of the same schema (``git archive main | tar -x``). ``--sqlite`` runs the
same on SQLite (one file, no PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvloop
from in_app_holds import child_result, in_parallel  # beside this script

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("hold", "choose patient", "submit", "pay", "view")


async def _call(
    app: Any,
    method: str,
    url: str,
    token: str,
    n: int,
    body: Any = None,
    key: str = "",
) -> tuple[int, dict[str, Any]]:
    """One request to ``app`` as the ``n``-th citizen's client sends it: (status, JSON)."""
    parts = urlsplit(url)
    payload = b"" if body is None else json.dumps(body).encode()
    headers = [
        (b"host", b"bench"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"authorization", f"Bearer {token}".encode()),
    ]
    if key:
        headers.append((b"idempotency-key", key.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": parts.path,
        "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(),
        "root_path": "",
        "headers": headers,
        "client": (f"10.{n % 250}.{(n // 250) % 8}.9", 40000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)  # a client that stays connected
        sent = True
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    try:
        data = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        data = {}
    return status, data if isinstance(data, dict) else {}


async def _drive(
    environ: dict[str, str], citizens: list[list[str]], slots: list[str], show_sql: bool
) -> dict[str, Any]:
    """In a child process whose ``sys.path`` starts with the tree under test."""
    from sqlalchemy import event

    from guahao.bootstrap import open_platform
    from guahao.config import load_settings
    from guahao.web.app import create_app

    settings = load_settings(environ)
    counts: Counter[str] = Counter()
    async with open_platform(settings, migrate=False) as platform:
        app = create_app(settings, platform=platform)
        app.state.platform = platform  # what the lifespan does
        engine = platform.engine.sync_engine

        texts: Counter[str] = Counter()

        @event.listens_for(engine, "before_cursor_execute")
        def statement(_conn: Any, _cursor: Any, text: str, *_: Any) -> None:
            counts["statements"] += 1
            if show_sql:
                texts[" ".join(text.split())[:160]] += 1

        @event.listens_for(engine, "begin")
        def begin(*_: Any) -> None:
            counts["transactions"] += 1

        @event.listens_for(engine.pool, "checkout")
        def checkout(*_: Any) -> None:
            counts["checkouts"] += 1

        gc.collect()
        gc.freeze()  # what ``guahao serve`` does before its first request (cli.py)
        bookings: dict[int, str] = {}
        pay_urls: dict[int, str] = {}
        statuses: dict[str, Counter[int]] = {step: Counter() for step in STEPS}

        async def hold(n: int) -> None:
            token = citizens[n][0]
            for attempt in range(3):
                slot = slots[(n * 7 + attempt * 131) % len(slots)]
                status, data = await _call(
                    app, "POST", "/api/v1/holds", token, n, {"slotId": slot}, f"flow-{n}-{attempt}"
                )
                statuses["hold"][status] += 1
                if status == 201:
                    bookings[n] = data["id"]
                    return
                if status != 409:
                    return

        async def choose(n: int) -> None:
            if n in bookings:
                token, patient = citizens[n]
                status, _ = await _call(
                    app,
                    "PUT",
                    f"/api/v1/bookings/{bookings[n]}/patient",
                    token,
                    n,
                    {"patientId": patient},
                )
                statuses["choose patient"][status] += 1

        async def submit(n: int) -> None:
            if n in bookings:
                status, data = await _call(
                    app,
                    "POST",
                    f"/api/v1/bookings/{bookings[n]}/submit",
                    citizens[n][0],
                    n,
                    {"channel": "self_pay"},
                )
                statuses["submit"][status] += 1
                if data.get("payUrl"):
                    pay_urls[n] = data["payUrl"]

        async def pay(n: int) -> None:
            if n in pay_urls:
                url = f"{urlsplit(pay_urls[n]).path}?channel=self_pay"
                status, _ = await _call(app, "POST", url, citizens[n][0], n)
                statuses["pay"][status] += 1

        async def view(n: int) -> None:
            if n in bookings:
                status, _ = await _call(
                    app, "GET", f"/api/v1/bookings/{bookings[n]}", citizens[n][0], n
                )
                statuses["view"][status] += 1

        warm = range(min(64, len(citizens) // 10))
        for step in (hold, choose, submit, pay, view):  # caches, prepared statements
            await in_parallel(warm, step)
        for counter in statuses.values():
            counter.clear()
        measured = range(len(warm), len(citizens))
        steps: dict[str, Any] = {}
        for name, step in zip(STEPS, (hold, choose, submit, pay, view), strict=True):
            counts.clear()
            texts.clear()
            cpu, wall = time.process_time(), time.perf_counter()
            await in_parallel(measured, step)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            done = sum(statuses[name].values())
            steps[name] = {
                "answers": dict(statuses[name]),
                "cpu_ms": round(cpu * 1000 / done, 3) if done else None,
                "wall_s": round(wall, 2),
                **{k: round(v / done, 2) if done else None for k, v in counts.items()},
            }
            if show_sql and done:
                steps[name]["sql"] = {t: round(c / done, 2) for t, c in texts.most_common()}
    return {"steps": steps}


def _child(options: argparse.Namespace) -> None:
    spec = json.loads(Path(options.child).read_text())
    # the loop ``guahao serve`` runs on
    result = uvloop.run(_drive(spec["environ"], spec["citizens"], spec["slots"], spec["show_sql"]))
    print("RESULT " + json.dumps(result), flush=True)


@contextlib.contextmanager
def _seeded(citizens: int, sqlite: bool) -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    """A database (PostgreSQL, or SQLite with ``sqlite``) and a Redis of their own, seeded
    as ``flow_surge`` seeds them but with holds of ten minutes (a step here waits for the
    whole crowd's step before it); both stopped at the end."""
    sys.path.insert(0, str(ROOT))
    from bench.flow_surge import _seed
    from bench.http_surge import _environment, _free_port
    from bench.work_dirs import tidy
    from guahao.platform.embedded_redis import EmbeddedRedis
    from infra import local_postgres

    work = Path(tempfile.mkdtemp(prefix="guahao-flow-cpu-"))
    work.chmod(0o755)  # the cluster runs as the postgres user when we are root
    pg_dir = work / "pg"
    if sqlite:
        url = f"sqlite+aiosqlite:///{work / 'guahao.db'}"
    else:
        local_postgres.start(pg_dir)
        url = local_postgres.createdb(pg_dir, "guahao")
    redis = EmbeddedRedis(work / "redis", port=_free_port())
    redis.start()
    try:
        environ = _environment(work / "data", url, redis.url)
        (work / "files").mkdir()
        yield environ, asyncio.run(_seed(environ, work / "files", citizens, 3, hold_minutes=10))
    finally:
        redis.stop()
        if not sqlite:
            local_postgres.stop(pg_dir)
        tidy(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--other", type=Path, help="the tree to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--citizens", type=int, default=600, help="per round and tree")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument(
        "--profile", type=Path, help="py-spy each round's child (raw folded stacks here)"
    )
    parser.add_argument(
        "--show-sql", action="store_true", help="each step's statements a citizen, by text"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        _child(options)
        return
    sys.path.insert(0, str(ROOT))
    from bench.http_surge import _check, _load_average

    trees = {"this": str(ROOT)}
    if options.other is not None:
        trees = {"other": str(options.other.resolve()), **trees}
    print(f"load average before: {_load_average()}", flush=True)
    results: list[dict[str, Any]] = []
    total = options.citizens * options.rounds * len(trees)
    with _seeded(total, options.sqlite) as (environ, seeded):
        citizens = [line.split() for line in seeded["citizens"].read_text().splitlines()]
        slots = seeded["slots"].read_text().split()
        start = 0
        for round_no in range(options.rounds):
            for name, tree in trees.items():
                spec = seeded["citizens"].parent / f"round-{round_no}-{name}.json"
                spec.write_text(
                    json.dumps(
                        {
                            "environ": environ,
                            "citizens": citizens[start : start + options.citizens],
                            "slots": slots,
                            "show_sql": options.show_sql,
                        }
                    )
                )
                start += options.citizens
                result = child_result(
                    Path(__file__).resolve(),
                    spec,
                    tree,
                    name=name,
                    round_no=round_no,
                    profile=options.profile,
                )
                results.append(result)
                print(json.dumps(result), flush=True)
        print("end checks:", json.dumps(asyncio.run(_check(environ, 0))))
    print("\n| step | " + " | ".join(f"{t} CPU ms (median)" for t in trees) + " | ratio |")
    print("| --- | " + " | ".join("---" for _ in trees) + " | --- |")
    for step in STEPS:
        medians = []
        for name in trees:
            mine = sorted(r["steps"][step]["cpu_ms"] for r in results if r["tree"] == name)
            medians.append(mine[len(mine) // 2])
        ratio = f"{medians[-1] / medians[0]:.2f}" if len(medians) == 2 else ""
        print(f"| {step} | " + " | ".join(f"{m:.3f}" for m in medians) + f" | {ratio} |")
    print(f"load average after: {_load_average()}")


if __name__ == "__main__":
    main()
