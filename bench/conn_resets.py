"""Connection resets under load (issue 13): where they come from, before and after the fix.

Not a test: it prints a table and writes ``bench/results/conn_resets-<time>.json``.

``guahao serve`` on a throwaway PostgreSQL cluster and a loopback Redis (as
bench/http_surge.py), twice in one run: **before**, with the server settings uvicorn had
(keep-alive 5 s, backlog 2 048, a shutdown that waits for ever), and **after**, with the
defaults (75 s, 4 096, 20 s). Rows:

- **crowd**: wrk on ``GET /health`` at 64, 1 000 and 2 000 connections; socket errors as wrk
  counts them (connect, read, write, timeout);
- **idle keep-alive**: connections that idle for a time around uvicorn's old 5 s keep-alive,
  then send a request carrying a request id of their own; a request fails when the connection
  is closed or reset under it. The server logs every request that reached the application
  (``GUAHAO_LOG_LEVEL=INFO``: one line with its request id), so the table says how many of
  the failed requests the application had seen;
- **worker replaced**: ``--workers 2`` under wrk at 64 connections while one worker is
  replaced: killed (a crash), SIGTERM (a worker stopped by hand) and the supervisor's SIGHUP
  (each worker drained, then replaced).

The machine has 2 cores shared with other work: only figures from the same run compare.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.http_surge import _environment, _free_port, _load_average, _wait_http  # noqa: E402
from bench.work_dirs import tidy  # noqa: E402
from guahao.platform.embedded_redis import EmbeddedRedis  # noqa: E402
from infra import local_postgres  # noqa: E402

BEFORE = {
    "GUAHAO_HTTP_KEEP_ALIVE_SECONDS": "5",
    "GUAHAO_HTTP_BACKLOG": "2048",
    "GUAHAO_HTTP_GRACEFUL_SHUTDOWN_SECONDS": "86400",
}
AFTER: dict[str, str] = {}


@dataclass
class Row:
    name: str
    server: str
    attempts: int = 0
    failed: int = 0
    failed_seen_by_app: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    per_s: float = 0.0


def _serve(environ: dict[str, str], port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    command = [str(ROOT / ".venv" / "bin" / "guahao"), "serve", "--port", str(port)]
    if workers > 1:
        command = [sys.executable, "-m", "bench.serve_workers", "--port", str(port)]
        command += ["--workers", str(workers)]
    process = subprocess.Popen(
        command,
        env=os.environ | environ,
        cwd=ROOT,
        start_new_session=True,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    _wait_http(f"http://127.0.0.1:{port}/health")
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wrk(url: str, connections: int, seconds: int) -> tuple[dict[str, int], float, int]:
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", url],
        capture_output=True,
        text=True,
        check=True,
    )
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    found = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", done.stdout
    )
    if found:
        errors = dict(zip(errors, map(int, found.groups()), strict=True))
    rate = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    total = re.search(r"(\d+) requests in", done.stdout)
    return errors, float(rate.group(1)) if rate else 0.0, int(total.group(1)) if total else 0


def _request(connection: socket.socket, request_id: str) -> bool:
    """Whether a whole answer came back on ``connection``."""
    connection.sendall(
        f"GET /health HTTP/1.1\r\nHost: bench\r\nX-Request-ID: {request_id}\r\n\r\n".encode()
    )
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        if not chunk:
            return False
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            return False
        body += chunk
    return head.startswith(b"HTTP/1.1 200")


def _idle_race(port: int, clients: int, idle: tuple[float, float], tag: str) -> list[str]:
    """``clients`` connections, each: one request, an idle time drawn from ``idle``, one
    more request; the request ids of the second requests that failed."""
    failed: list[str] = []
    lock = threading.Lock()

    def one(number: int) -> None:
        request_id = f"{tag}-{number}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
                if not _request(connection, f"{request_id}-first"):
                    raise ConnectionError
                time.sleep(random.uniform(*idle))
                ok = _request(connection, request_id)
        except OSError:
            ok = False
        if not ok:
            with lock:
                failed.append(request_id)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
        time.sleep(0.01)
    for thread in threads:
        thread.join()
    return failed


def _seen(log: Path, request_ids: list[str]) -> int:
    text = log.read_text(errors="replace")
    return sum(1 for request_id in request_ids if f'"{request_id}"' in text)


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--crowds", type=int, nargs="+", default=[64, 1000, 2000])
    parser.add_argument("--idle-clients", type=int, default=150)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="guahao-conn-resets-"))
    work.chmod(0o755)
    rows: list[Row] = []
    load_before = _load_average()
    pg_dir = work / "pg"
    redis = EmbeddedRedis(work / "redis", port=_free_port())
    servers: list[subprocess.Popen[bytes]] = []
    try:
        local_postgres.start(pg_dir)
        environ = _environment(work / "data", local_postgres.createdb(pg_dir, "guahao"), "")
        redis.start()
        environ |= {"GUAHAO_REDIS_URL": redis.url, "GUAHAO_LOG_LEVEL": "INFO"}
        for label, settings in (("before", BEFORE), ("after", AFTER)):
            log = work / f"server-{label}.log"
            port = _free_port()
            server = _serve(environ | settings, port, 1, log)
            servers.append(server)
            url = f"http://127.0.0.1:{port}/health"
            for crowd in options.crowds:
                errors, rate, total = _wrk(url, crowd, options.seconds)
                rows.append(
                    Row(
                        f"crowd c{crowd}",
                        label,
                        attempts=total,
                        failed=sum(errors.values()),
                        socket_errors=errors,
                        per_s=rate,
                    )
                )
                print(rows[-1], flush=True)
            for low, high in ((4.8, 5.2), (5.5, 6.5)):
                failed = _idle_race(port, options.idle_clients, (low, high), f"{label}-{low}")
                time.sleep(1.0)  # the log lines are written
                rows.append(
                    Row(
                        f"idle keep-alive {low}-{high} s",
                        label,
                        attempts=options.idle_clients,
                        failed=len(failed),
                        failed_seen_by_app=_seen(log, failed),
                    )
                )
                print(rows[-1], flush=True)
            _stop(servers.pop())
        for how in ("SIGKILL a worker", "SIGTERM a worker", "SIGHUP the supervisor"):
            log = work / "server-workers.log"
            port = _free_port()
            server = _serve(environ | {"GUAHAO_LOG_LEVEL": "WARNING"}, port, 2, log)
            servers.append(server)
            time.sleep(3)  # both workers up
            result: dict[str, object] = {}

            def load(port: int = port, result: dict[str, object] = result) -> None:
                result["wrk"] = _wrk(f"http://127.0.0.1:{port}/health", 64, 12)

            driver = threading.Thread(target=load)
            driver.start()
            time.sleep(3)
            workers = _children(server.pid)
            if how == "SIGKILL a worker":
                os.kill(workers[0], signal.SIGKILL)
            elif how == "SIGTERM a worker":
                os.kill(workers[0], signal.SIGTERM)
            else:
                os.kill(server.pid, signal.SIGHUP)
            driver.join()
            errors, rate, total = result["wrk"]  # type: ignore[misc]
            rows.append(
                Row(
                    how,
                    "after",
                    attempts=total,
                    failed=sum(errors.values()),
                    socket_errors=errors,
                    per_s=rate,
                )
            )
            print(rows[-1], flush=True)
            _stop(servers.pop())
    finally:
        for server in servers:
            _stop(server)
        redis.stop()
        local_postgres.stop(pg_dir)
        tidy(work)
    load_after = _load_average()
    print(f"\nload average before {load_before}, after {load_after}")
    print(f"{'row':32} {'server':7} {'requests':>9} {'failed':>7} {'seen by app':>11}  errors")
    for row in rows:
        print(
            f"{row.name:32} {row.server:7} {row.attempts:9d} {row.failed:7d} "
            f"{row.failed_seen_by_app:11d}  {row.socket_errors or ''}"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"conn_resets-{stamp}.json").write_text(
        json.dumps({"load": [load_before, load_after], "rows": [asdict(r) for r in rows]}, indent=1)
    )


if __name__ == "__main__":
    main()
