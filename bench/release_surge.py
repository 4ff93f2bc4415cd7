"""Release surge (抢号) benchmark: the Redis slot pool against its two baselines, side by side.

Not a test: it prints a table and writes ``bench/results/release_surge-<time>.json``.

1. **surge** - ``RedisInventory.hold_or_refusal`` (``hold`` with its refusals returned, not
   raised, as the platform's front answers sold out) as a platform worker calls it: one
   request, one ``await``, no batching across requests (a web worker cannot pipeline separate
   people's requests). Many coroutines share a blocking pool of TCP connections to a loopback
   Redis, in one or more worker processes. Every attempt is a new account on a random slot, so most
   attempts after sell-out are refusals, as at a real release. A grant costs one script on
   one server (the slot's script claims the account's marker too) and two on a cluster (the
   marker's hash tag is another shard's); a refusal costs one, or none once the worker's
   sold-out view knows the slot. Oversell is checked afterwards with ``counts``. With
   ``--profile DIR`` every worker process is recorded by py-spy (raw folded stacks).
2. **redis-benchmark** - the Redis ceiling: a minimal decrement Lua script by EVALSHA on the
   same server over loopback TCP, same number of connections, no pipelining.
3. **cluster** - the same surge as 1 with the slot pool on a local three-master Redis Cluster
   (``redis+cluster://``, ``tests/fixtures/redis_cluster.py``): every batch split by node.
   On this one machine the three servers share its cores, so the row shows what routing by
   hash slot costs beside one server, not what more machines would add.
4. **postgres** - a hot-row hold in PostgreSQL (asyncpg): ``UPDATE slot SET remaining =
   remaining - 1 WHERE id = $1 AND remaining > 0`` in a transaction, same crowd, same harness.

The machine has 2 cores shared by the server under test and its clients; figures are only
meaningful as ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guahao.platform.embedded_redis import EmbeddedRedis  # noqa: E402
from guahao.platform.error_codes import Refusal  # noqa: E402
from guahao.platform.inventory import RedisInventory  # noqa: E402
from guahao.platform.ports import SlotState  # noqa: E402
from guahao.platform.redis_pools import is_cluster_url, shared_client  # noqa: E402

RELEASE_MS = 1_780_000_000_000
TTL_MS = 15 * 60 * 1000
DECREMENT_LUA = (
    "local v = tonumber(redis.call('GET', KEYS[1]) or '0') "
    "if v > 0 then redis.call('DECR', KEYS[1]) return 1 end return 0"
)


@dataclass
class Plan:
    slots: int
    capacity: int
    attempts: int
    coroutines: int
    connections: int
    pipeline_batch: int = 256


@dataclass
class Run:
    backend: str
    processes: int
    attempts: int = 0
    granted: int = 0
    refused: int = 0
    errors: int = 0
    seconds: float = 0.0
    decisions_per_s: float = 0.0
    grants_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    grant_p50_ms: float = 0.0
    grant_p99_ms: float = 0.0
    sell_out_s: float = 0.0
    admissions_per_s: float = 0.0
    oversold: int = 0
    worker_cpu_us_per_decision: float = 0.0
    redis_cpu_us_per_decision: float = 0.0
    script_calls: int = 0
    redis_reads: int = 0
    redis_us_per_script_call: float = 0.0
    redis_commands_per_decision: float = 0.0
    notes: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- one worker process -------------------------------------------------------------------


def _client(url: str, connections: int) -> aioredis.Redis:
    """A blocking pool on one server, or the platform's cluster client on a cluster URL."""
    if is_cluster_url(url):
        return shared_client(url, max_connections=connections, timeout=10.0)
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=connections)
    return aioredis.Redis(connection_pool=pool)


async def _redis_worker(url: str, plan: Plan, share: int, seed: int, prefix: str) -> Any:
    client = _client(url, plan.connections)
    inventory = RedisInventory(client, key_prefix=prefix, pipeline_batch=plan.pipeline_batch)
    rng = random.Random(seed)
    # Each attempt's request (slot, ids) is made before the clock starts: a platform worker
    # gets them from the request, and building them here was a tenth of the worker's samples
    # (bench/profiles/engine2-*), time that measured the bench rather than the pool.
    attempts = [
        (f"s{rng.randrange(plan.slots)}", f"h{seed}-{n}", f"a{seed}-{n}", f"k{seed}-{n}")
        for n in range(share)
    ]
    todo = iter(attempts)
    # the refusals answered as values, as a worker's hot path takes them (an exception per
    # refusal was a tenth of the worker, bench/profiles/engine6-1-*)
    hold = inventory.hold_or_refusal

    async def hold_once(attempt: tuple[str, str, str, str]) -> str:
        slot_id, hold_id, account_id, key = attempt
        answer = await hold(
            slot_id,
            hold_id=hold_id,
            account_id=account_id,
            now_ms=RELEASE_MS,
            ttl_ms=TTL_MS,
            idempotency_key=key,
        )
        if isinstance(answer, Refusal):
            return "refused" if answer.code == "SLOT_SOLD_OUT" else answer.code
        return "granted"

    await client.ping()  # connect before the clock starts
    # as a platform worker does: its sold-out view follows the pool's give-back channel
    inventory.follow_returns()
    async with asyncio.timeout(10):
        await inventory.sold_out.subscribed()
    result = await _crowd(hold_once, todo, plan.coroutines)
    await inventory.stop_following()
    await client.aclose()
    return result


async def _postgres_worker(dsn: str, plan: Plan, share: int, seed: int) -> Any:
    pool = await asyncpg.create_pool(dsn, min_size=plan.connections, max_size=plan.connections)
    rng = random.Random(seed)
    todo = iter(range(share))

    async def hold_once(n: int) -> str:
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE slot SET remaining = remaining - 1"
                " WHERE id = $1 AND remaining > 0 RETURNING remaining",
                rng.randrange(plan.slots),
            )
        return "granted" if row is not None else "refused"

    result = await _crowd(hold_once, todo, plan.coroutines)
    await pool.close()
    return result


async def _crowd(hold_once: Any, todo: Any, coroutines: int) -> dict[str, Any]:
    latencies: list[int] = []
    grant_latencies: list[int] = []
    outcomes: dict[str, int] = {}
    last_grant = 0.0

    async def person() -> None:
        nonlocal last_grant
        for n in todo:
            t0 = time.perf_counter_ns()
            try:
                outcome = await hold_once(n)
            except Exception as exc:
                outcome = f"error:{type(exc).__name__}"
            elapsed = time.perf_counter_ns() - t0
            latencies.append(elapsed)
            if outcome == "granted":
                grant_latencies.append(elapsed)
                last_grant = time.time()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    started = time.time()
    cpu = time.process_time()
    await asyncio.gather(*(person() for _ in range(coroutines)))
    return {
        "cpu_s": time.process_time() - cpu,
        "started": started,
        "ended": time.time(),
        "last_grant": last_grant,
        "lat": latencies,
        "grant_lat": grant_latencies,
        "outcomes": outcomes,
    }


def _process_main(
    kind: str, target: str, plan: Plan, share: int, seed: int, prefix: str, go: Any, out: Any
) -> None:
    go.wait()
    if kind == "redis":
        # uvloop, as in `guahao serve` (and the same loop for the baseline, to be fair).
        out.put(uvloop.run(_redis_worker(target, plan, share, seed, prefix)))
    else:
        out.put(uvloop.run(_postgres_worker(target, plan, share, seed)))


PROFILE: dict[str, Path] = {}
"""``--profile DIR``: py-spy records every worker process of every row into ``DIR``."""


def _spy(pid: int, name: str) -> subprocess.Popen[bytes] | None:
    """py-spy on one worker from before the gate opens until it is stopped (SIGINT)."""
    if "dir" not in PROFILE:
        return None
    return subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--gil",
            "--nonblocking",
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(PROFILE["dir"] / f"{name}.folded"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def redis_cpu_s(node_urls: list[str]) -> float:
    """CPU seconds the Redis servers have used so far (user + system, all nodes)."""
    total = 0.0
    for node_url in node_urls:
        sync = __import__("redis").Redis.from_url(node_url)
        info = sync.info("cpu")
        sync.close()
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


def redis_reads(node_urls: list[str]) -> int:
    """Reads the Redis servers have made from their clients so far (``total_reads_processed``,
    all nodes): fewer a decision means the workers' pipelines sent larger packets, and each
    read (and its reply's write) is Redis CPU beside the scripts' own."""
    total = 0
    for node_url in node_urls:
        sync = __import__("redis").Redis.from_url(node_url)
        total += int(sync.info("stats")["total_reads_processed"])
        sync.close()
    return total


SCRIPT_CALLS = ("cmdstat_evalsha", "cmdstat_eval")
NOT_THE_WORKERS = ("cmdstat_info", "cmdstat_config")
"""The bench's own questions to the servers, left out of the commands counted."""


def redis_script_stats(node_urls: list[str]) -> tuple[int, float, int]:
    """Script calls (EVALSHA and EVAL) the Redis servers have run so far, the microseconds
    of their own time those calls took, and every other command run (nearly all of them by
    the scripts: ``INFO commandstats`` counts a script's commands too), all nodes: the
    server's side of a decision, beside the worker's, without a profiler on Redis. The count
    of commands is the one figure here no load on the machine moves."""
    calls, usec, commands = 0, 0.0, 0
    for node_url in node_urls:
        sync = __import__("redis").Redis.from_url(node_url)
        stats = sync.info("commandstats")
        sync.close()
        for name, stat in stats.items():
            if name in SCRIPT_CALLS:
                calls += int(stat.get("calls", 0))
                usec += float(stat.get("usec", 0))
            elif name not in NOT_THE_WORKERS:
                commands += int(stat.get("calls", 0))
    return calls, usec, commands


def crowd(
    kind: str,
    target: str,
    plan: Plan,
    processes: int,
    prefix: str = "",
    redis_nodes: list[str] | None = None,
) -> Run:
    """Split the crowd over ``processes`` worker processes, start them together, merge.

    CPU per decision (the workers' and, given ``redis_nodes``, the servers') is the figure
    that load on a shared machine disturbs least: it says what each answer costs, not how
    much of the machine the run happened to get.
    """
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    per_process = Plan(
        plan.slots,
        plan.capacity,
        plan.attempts,
        max(1, plan.coroutines // processes),
        max(1, plan.connections // processes),
        plan.pipeline_batch,
    )
    workers = [
        ctx.Process(
            target=_process_main,
            args=(kind, target, per_process, plan.attempts // processes, i, prefix, go, out),
        )
        for i in range(processes)
    ]
    for w in workers:
        w.start()
    spies = [
        _spy(w.pid, f"{prefix.rstrip(':') or kind + str(processes)}-worker{i}")
        for i, w in enumerate(workers)
        if w.pid is not None
    ]
    time.sleep(1.5)  # let every process import and wait at the gate
    redis_before = redis_cpu_s(redis_nodes) if redis_nodes else 0.0
    scripts_before = redis_script_stats(redis_nodes) if redis_nodes else (0, 0.0, 0)
    reads_before = redis_reads(redis_nodes) if redis_nodes else 0
    go.set()
    parts = [out.get() for _ in workers]
    redis_used = redis_cpu_s(redis_nodes) - redis_before if redis_nodes else 0.0
    scripts_after = redis_script_stats(redis_nodes) if redis_nodes else (0, 0.0, 0)
    reads_after = redis_reads(redis_nodes) if redis_nodes else 0
    for spy in spies:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
    for w in workers:
        w.join()
    lat = sorted(x for p in parts for x in p["lat"])
    outcomes: dict[str, int] = {}
    for p in parts:
        for k, v in p["outcomes"].items():
            outcomes[k] = outcomes.get(k, 0) + v
    seconds = max(p["ended"] for p in parts) - min(p["started"] for p in parts)
    run = Run(backend=kind, processes=processes)
    run.attempts = len(lat)
    run.worker_cpu_us_per_decision = sum(p["cpu_s"] for p in parts) / run.attempts * 1e6
    run.redis_cpu_us_per_decision = redis_used / run.attempts * 1e6
    run.script_calls = scripts_after[0] - scripts_before[0]
    run.redis_commands_per_decision = (scripts_after[2] - scripts_before[2]) / run.attempts
    run.redis_reads = reads_after - reads_before
    if run.script_calls:
        run.redis_us_per_script_call = (scripts_after[1] - scripts_before[1]) / run.script_calls
    run.granted = outcomes.pop("granted", 0)
    run.refused = outcomes.pop("refused", 0)
    run.errors = sum(outcomes.values())
    if outcomes:
        run.notes.append(f"other outcomes: {outcomes}")
    run.seconds = seconds
    run.decisions_per_s = run.attempts / seconds
    run.grants_per_s = run.granted / seconds
    run.p50_ms = _percentile(lat, 0.50)
    run.p99_ms = _percentile(lat, 0.99)
    grant_lat = sorted(x for p in parts for x in p["grant_lat"])
    run.grant_p50_ms = _percentile(grant_lat, 0.50)
    run.grant_p99_ms = _percentile(grant_lat, 0.99)
    # Admissions: units handed out per second while there were units to hand out (from the
    # start of the surge to the last grant), the rate comparable with a decrement ceiling.
    run.sell_out_s = max(p["last_grant"] for p in parts) - min(p["started"] for p in parts)
    run.admissions_per_s = run.granted / run.sell_out_s if run.sell_out_s > 0 else 0.0
    return run


def _percentile(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return 0.0
    return sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * q))] / 1e6


# --- backends -----------------------------------------------------------------------------


async def load_redis(url: str, plan: Plan, prefix: str) -> None:
    client = _client(url, 8)
    inventory = RedisInventory(client, key_prefix=prefix)
    for s in range(plan.slots):
        await inventory.load(
            SlotState(slot_id=f"s{s}", capacity=plan.capacity, booked=0, release_at_ms=RELEASE_MS)
        )
    await client.aclose()


async def redis_oversold(url: str, plan: Plan, prefix: str, granted: int) -> tuple[int, str]:
    client = _client(url, 8)
    counts = await RedisInventory(client, key_prefix=prefix).counts(
        [f"s{s}" for s in range(plan.slots)], now_ms=RELEASE_MS + 1
    )
    await client.aclose()
    bad = sum(
        1
        for c in counts.values()
        if min(c.available, c.held) < 0
        or c.available + c.held + c.booked + c.returning != c.capacity
    )
    held = sum(c.held for c in counts.values())
    # Oversell: more grants answered than the pool could give, or a slot out of balance.
    return max(0, granted - plan.slots * plan.capacity) + bad + abs(held - granted), (
        f"held in Redis {held}, grants answered {granted}"
    )


async def setup_postgres(dsn: str, plan: Plan) -> None:
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "DROP TABLE IF EXISTS slot;"
        " CREATE TABLE slot (id int PRIMARY KEY, remaining int NOT NULL CHECK (remaining >= 0))"
    )
    await conn.executemany(
        "INSERT INTO slot VALUES ($1, $2)", [(s, plan.capacity) for s in range(plan.slots)]
    )
    await conn.close()


async def postgres_oversold(dsn: str, plan: Plan, granted: int) -> tuple[int, str]:
    conn = await asyncpg.connect(dsn)
    taken = await conn.fetchval("SELECT sum($1 - remaining) FROM slot", plan.capacity)
    negative = await conn.fetchval("SELECT count(*) FROM slot WHERE remaining < 0")
    await conn.close()
    return abs(int(taken) - granted) + int(negative), f"taken in SQL {taken}"


def redis_benchmark(port: int, sha: str, connections: int, requests: int) -> dict[str, Any]:
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return {"available": False, "why": "redis-benchmark not installed (see bench/run.sh)"}
    command = [
        exe,
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-c",
        str(connections),
        "-n",
        str(requests),
        "-P",
        "1",
        "--csv",
        "EVALSHA",
        sha,
        "1",
        "bench:{stock}",
    ]
    samples = []
    for _ in range(3):  # the median of three: these machines are shared and noisy
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows = [
            line.split('","') for line in done.stdout.splitlines() if line.startswith('"EVALSHA')
        ]
        samples.append(float(rows[-1][1].strip('"')))
    rps = sorted(samples)[1]
    return {"available": True, "ops_per_s": rps, "samples": samples, "command": " ".join(command)}


def start_postgres(directory: Path) -> str | None:
    helper = ROOT / "infra" / "local_postgres.py"
    done = subprocess.run(
        [sys.executable, str(helper), "start", str(directory)], capture_output=True, text=True
    )
    if done.returncode != 0:
        print(f"postgres did not start: {done.stderr.strip()}", file=sys.stderr)
        return None
    return done.stdout.strip().splitlines()[-1].replace("postgresql+asyncpg://", "postgresql://")


def stop_postgres(directory: Path) -> None:
    helper = ROOT / "infra" / "local_postgres.py"
    subprocess.run([sys.executable, str(helper), "stop", str(directory)], check=False)


# --- the run ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=200)
    parser.add_argument("--capacity", type=int, default=50)
    parser.add_argument("--attempts", type=int, default=40_000)
    parser.add_argument("--coroutines", type=int, default=200)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--pipeline-batch", type=int, default=256, help="RedisInventory(pipeline_batch=...)"
    )
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--benchmark-requests", type=int, default=200_000)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-cluster", action="store_true")
    parser.add_argument(
        "--profile", type=Path, help="py-spy every worker process (raw folded stacks here)"
    )
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        PROFILE["dir"] = args.profile
    plan = Plan(
        args.slots,
        args.capacity,
        args.attempts,
        args.coroutines,
        args.connections,
        args.pipeline_batch,
    )
    runs: list[Run] = []
    report: dict[str, Any] = {"plan": asdict(plan), "when": datetime.now(UTC).isoformat()}

    port = free_port()
    server = EmbeddedRedis(port=port)
    url = server.start()
    try:
        for processes in args.processes:
            prefix = f"surge{processes}:"
            asyncio.run(load_redis(url, plan, prefix))
            run = crowd("redis", url, plan, processes, prefix, [url])
            run.oversold, note = asyncio.run(redis_oversold(url, plan, prefix, run.granted))
            run.notes.append(note)
            runs.append(run)
        sync = __import__("redis").Redis(host="127.0.0.1", port=port)
        sync.set("bench:{stock}", 10**12)
        sha = sync.script_load(DECREMENT_LUA)
        sync.close()
        ceiling_before = redis_script_stats([url])
        report["redis_benchmark"] = redis_benchmark(
            port, sha, args.connections, args.benchmark_requests
        )
        ceiling_after = redis_script_stats([url])
        if ceiling_after[0] > ceiling_before[0]:
            report["redis_benchmark"]["redis_us_per_script_call"] = (
                ceiling_after[1] - ceiling_before[1]
            ) / (ceiling_after[0] - ceiling_before[0])
        report["redis_server"] = server_version(url)
    finally:
        server.stop()

    if not args.skip_cluster:
        from tests.fixtures.redis_cluster import LocalRedisCluster

        cluster = LocalRedisCluster()
        cluster_url = cluster.start()
        try:
            for processes in args.processes:
                prefix = f"cluster{processes}:"
                asyncio.run(load_redis(cluster_url, plan, prefix))
                run = crowd("redis", cluster_url, plan, processes, prefix, cluster.node_urls)
                run.backend = "cluster"
                run.oversold, note = asyncio.run(
                    redis_oversold(cluster_url, plan, prefix, run.granted)
                )
                run.notes.append(note)
                runs.append(run)
        finally:
            cluster.stop()

    if not args.skip_postgres:
        pg_dir = Path(tempfile.mkdtemp(prefix="guahao-bench-pg-", dir="/tmp"))
        dsn = start_postgres(pg_dir)
        try:
            if dsn is not None:
                for processes in args.processes:
                    asyncio.run(setup_postgres(dsn, plan))
                    run = crowd("postgres", dsn, plan, processes)
                    run.oversold, note = asyncio.run(postgres_oversold(dsn, plan, run.granted))
                    run.notes.append(note)
                    runs.append(run)
        finally:
            stop_postgres(pg_dir)
            shutil.rmtree(pg_dir, ignore_errors=True)

    report["runs"] = [asdict(r) for r in runs]
    best_redis = max((r for r in runs if r.backend == "redis"), key=lambda r: r.decisions_per_s)
    pg_runs = [r for r in runs if r.backend == "postgres"]
    ceiling = report["redis_benchmark"].get("ops_per_s")
    ratios: dict[str, Any] = {"surge_processes": best_redis.processes}
    if ceiling:
        ratios["surge_decisions_over_redis_benchmark"] = best_redis.decisions_per_s / ceiling
        ratios["surge_admissions_over_redis_benchmark"] = best_redis.admissions_per_s / ceiling
    if pg_runs:
        best_pg = max(pg_runs, key=lambda r: r.decisions_per_s)
        ratios["surge_decisions_over_postgres"] = (
            best_redis.decisions_per_s / best_pg.decisions_per_s
        )
        ratios["surge_admissions_over_postgres"] = (
            best_redis.admissions_per_s / best_pg.admissions_per_s
        )
        ratios["postgres_processes"] = best_pg.processes
    for run in (r for r in runs if r.backend == "cluster"):
        single = next(r for r in runs if r.backend == "redis" and r.processes == run.processes)
        ratios[f"cluster_admissions_over_redis_{run.processes}p"] = (
            run.admissions_per_s / single.admissions_per_s
        )
        ratios[f"cluster_decisions_over_redis_{run.processes}p"] = (
            run.decisions_per_s / single.decisions_per_s
        )
        if ceiling:
            ratios[f"cluster_admissions_over_redis_benchmark_{run.processes}p"] = (
                run.admissions_per_s / ceiling
            )
    report["ratios"] = ratios
    print_table(runs, report)
    out = ROOT / "bench" / "results" / f"release_surge-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten {out.relative_to(ROOT)}")


def server_version(url: str) -> str:
    sync = __import__("redis").Redis.from_url(url)
    version = str(sync.info("server")["redis_version"])
    sync.close()
    return version


def print_table(runs: list[Run], report: dict[str, Any]) -> None:
    plan = report["plan"]
    print(
        f"\nrelease surge: {plan['slots']} slots x {plan['capacity']} units, "
        f"{plan['attempts']} hold attempts, {plan['coroutines']} coroutines, "
        f"{plan['connections']} connections; Redis {report.get('redis_server', '?')}\n"
    )
    head = f"{'backend':<10}{'procs':>6}{'decisions/s':>13}{'admissions/s':>14}{'sell-out s':>11}"
    head += f"{'p50 ms':>9}{'p99 ms':>9}{'grant p50':>10}{'grant p99':>10}"
    print(
        head + f"{'granted':>9}{'refused':>9}{'errors':>8}{'oversold':>10}{'cpu µs/dec':>13}"
        f"{'scripts':>9}{'µs/script':>10}{'cmds/dec':>10}"
    )
    for r in runs:
        print(
            f"{r.backend:<10}{r.processes:>6}{r.decisions_per_s:>13.0f}"
            f"{r.admissions_per_s:>14.0f}{r.sell_out_s:>11.2f}"
            f"{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.grant_p50_ms:>10.2f}{r.grant_p99_ms:>10.2f}"
            f"{r.granted:>9}{r.refused:>9}{r.errors:>8}{r.oversold:>10}"
            f"{r.worker_cpu_us_per_decision:>7.1f}+{r.redis_cpu_us_per_decision:<5.1f}"
            f"{r.script_calls:>9}{r.redis_us_per_script_call:>10.1f}"
            f"{r.redis_commands_per_decision:>10.2f}"
        )
    rb = report["redis_benchmark"]
    if rb.get("available"):
        print(
            f"{'redis-benchmark EVALSHA decrement (ceiling)':<44}{rb['ops_per_s']:>12.0f} ops/s"
            f"   {rb.get('redis_us_per_script_call', 0.0):.1f} µs/script in Redis"
        )
    else:
        print(f"redis-benchmark: {rb.get('why')}")
    for k, v in report["ratios"].items():
        print(f"  {k}: {v:.3f}" if isinstance(v, float) else f"  {k}: {v}")


if __name__ == "__main__":
    main()
