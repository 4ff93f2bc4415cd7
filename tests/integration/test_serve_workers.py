"""``guahao serve --workers N``: several processes on one socket, one region between them.

Real processes throughout: the supervisor and its children are started as an operator would,
and the tests steer requests to one worker by stopping the other (SIGSTOP: a stopped process
accepts nothing, so the one left running must answer).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner

from guahao.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in found]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait_for(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {what}")


def _code_sent(log: Path, phone: str) -> str:
    """The six-digit code a worker printed for ``phone`` (the console SMS gateway)."""
    masked = f"{phone[:3]}****{phone[-4:]}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = re.findall(
            rf"SMS to {re.escape(masked)}:\D*(\d{{6}})", log.read_text(errors="replace")
        )
        if found:
            return str(found[-1])
        time.sleep(0.1)
    raise AssertionError(f"no code sent to {masked}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


@pytest.fixture
def supervisor_of(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Supervisors started by a test, killed (SIGKILL) after it if still running."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_several_workers_are_refused_on_the_embedded_defaults(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["serve", "--workers", "2"], env={"GUAHAO_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 2, result.output
    for named in ("SQLite", "embedded Redis", "embedded search index"):
        assert named in result.output
    assert not (tmp_path / "guahao.db").exists()  # refused before anything was opened


_PID_SERVER = """
import http.server, os, socket, sys
listener = socket.socket(fileno=int(sys.argv[1]))
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Answer, bind_and_activate=False)
server.socket = listener
server.serve_forever()
"""

_SUPERVISOR = """
import sys
from guahao.worker_processes import bind_listener, supervise
script, port = sys.argv[1], int(sys.argv[2])
command = lambda fd, index: [sys.executable, "-c", script, str(fd)]
raise SystemExit(supervise(bind_listener("127.0.0.1", port), 2, command))
"""


def test_workers_share_the_socket_are_replaced_and_die_with_the_supervisor(
    supervisor_of: list[subprocess.Popen[bytes]],
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    supervisor = subprocess.Popen(
        [sys.executable, "-c", _SUPERVISOR, _PID_SERVER, str(port)], cwd=ROOT
    )
    supervisor_of.append(supervisor)
    _wait_for(lambda: len(_children(supervisor.pid)) == 2 and _answers(url), 20, "two workers")
    first, second = _children(supervisor.pid)

    os.kill(second, signal.SIGSTOP)
    try:
        assert httpx.get(url, timeout=5).text == str(first)
    finally:
        os.kill(second, signal.SIGCONT)
    os.kill(first, signal.SIGSTOP)
    try:
        assert httpx.get(url, timeout=5).text == str(second)
    finally:
        os.kill(first, signal.SIGCONT)

    os.kill(first, signal.SIGKILL)  # a worker that dies is replaced
    _wait_for(
        lambda: len(_children(supervisor.pid)) == 2 and first not in _children(supervisor.pid),
        20,
        "a replacement worker",
    )
    workers = _children(supervisor.pid)
    supervisor.kill()  # no clean-up code runs in the supervisor: the kernel stops its children
    supervisor.wait()
    _wait_for(lambda: not any(_alive(pid) for pid in workers), 20, "the workers to die")


_PID_AND_SOCKET_SERVER = """
import http.server, os, socket, sys
listener = socket.socket(fileno=int(sys.argv[1]))
identity = f"{os.getpid()} {os.fstat(listener.fileno()).st_ino}".encode()
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(identity)))
        self.end_headers()
        self.wfile.write(identity)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Answer, bind_and_activate=False)
server.socket = listener
server.serve_forever()
"""

_BALANCED_SUPERVISOR = """
import sys
from guahao.worker_processes import bind_listeners, supervise
script, port, balance = sys.argv[1], int(sys.argv[2]), sys.argv[3]
command = lambda fd, index: [sys.executable, "-c", script, str(fd)]
raise SystemExit(supervise(bind_listeners("127.0.0.1", port, 2, balance=balance), 2, command))
"""


def _who_answers(url: str, connections: int) -> list[tuple[int, int]]:
    """(worker pid, inode of the socket it accepted on) for ``connections`` new connections."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    found = []
    for _ in range(connections):
        with socket.create_connection((host, int(port)), timeout=5) as connection:
            connection.sendall(b"GET / HTTP/1.0\r\n\r\n")
            answer = b""
            while chunk := connection.recv(4096):
                answer += chunk
        pid, inode = answer.rpartition(b"\r\n\r\n")[2].split()
        found.append((int(pid), int(inode)))
    return found


def test_each_worker_accepts_on_a_socket_of_its_own_and_the_kernel_spreads_the_crowd(
    supervisor_of: list[subprocess.Popen[bytes]],
) -> None:
    """One ``SO_REUSEPORT`` socket per worker (the default balance): the kernel hands each
    worker about half the new connections, where one shared socket let whichever worker woke
    first take a crowd's connections (621 : 379 at 1 000 in a bench run); a worker
    that dies is replaced on its own socket, which the supervisor kept open."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _BALANCED_SUPERVISOR,
            _PID_AND_SOCKET_SERVER,
            str(port),
            "reuseport",
        ],
        cwd=ROOT,
    )
    supervisor_of.append(supervisor)
    _wait_for(lambda: len(_children(supervisor.pid)) == 2 and _answers(url), 20, "two workers")
    answers = _who_answers(url, 200)
    sockets = {pid: inode for pid, inode in answers}
    assert sorted(sockets) == sorted(_children(supervisor.pid))
    assert len(set(sockets.values())) == 2  # a listening socket each, on the one port
    for pid in sockets:
        # 200 connections hashed over two sockets: 100 ± 7 each (anything past 60 : 140
        # is a 1-in-10 000 draw)
        assert 60 <= sum(1 for answered, _ in answers if answered == pid) <= 140

    first = min(sockets)
    os.kill(first, signal.SIGKILL)  # its successor accepts on the same socket
    _wait_for(
        lambda: len(_children(supervisor.pid)) == 2 and first not in _children(supervisor.pid),
        20,
        "a replacement worker",
    )
    _wait_for(
        lambda: len({pid for pid, _ in _who_answers(url, 20)} - {first}) == 2,
        20,
        "both workers answering",
    )
    assert {inode for _, inode in _who_answers(url, 40)} == set(sockets.values())


def test_a_shared_socket_is_one_socket_for_every_worker(
    supervisor_of: list[subprocess.Popen[bytes]],
) -> None:
    """``http_accept_balance = "shared"``: every worker accepts from the same socket, so a
    stopped worker's share goes to the other at once (what the region tests below rely on
    to steer requests)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    supervisor = subprocess.Popen(
        [sys.executable, "-c", _BALANCED_SUPERVISOR, _PID_AND_SOCKET_SERVER, str(port), "shared"],
        cwd=ROOT,
    )
    supervisor_of.append(supervisor)
    _wait_for(lambda: len(_children(supervisor.pid)) == 2 and _answers(url), 20, "two workers")
    first, second = _children(supervisor.pid)
    os.kill(second, signal.SIGSTOP)
    try:
        assert {pid for pid, _ in _who_answers(url, 20)} == {first}
    finally:
        os.kill(second, signal.SIGCONT)
    assert len({inode for _, inode in _who_answers(url, 40)}) == 1


_SLOW_STARTING_DRAINING_SERVER = """
import asyncio, os, signal, socket, sys
async def main():
    listener = socket.socket(fileno=int(sys.argv[1]))
    body = str(os.getpid()).encode()
    connected = set()  # every connection accepted, from its transport's making to its loss
    class Answer(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.asked = transport, b""
            connected.add(transport)
        def data_received(self, data):
            self.asked += data
            if b"\\r\\n\\r\\n" in self.asked:
                self.transport.write(b"HTTP/1.0 200 OK\\r\\n\\r\\n" + body)
                self.transport.close()
        def connection_lost(self, exc):
            connected.discard(self.transport)
    await asyncio.sleep(0.3)  # a platform opens its pools before it serves
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Answer, sock=listener)
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    server.close()  # stops accepting at once,
    await asyncio.sleep(1.5)  # then drains (a live stream ends only at the grace's end)
    # and answers every connection it accepted, as uvicorn's graceful shutdown does. Counted
    # by transport, not by handler task: on a loaded machine a connection accepted just
    # before the close may have no handler yet, and the loop's end would reset it (a flake
    # of this stand-in, twice in CI, not of the supervisor).
    while connected:
        await asyncio.sleep(0.05)
asyncio.run(main())
"""

_OVERLAPPING_SUPERVISOR = """
import sys
from guahao.worker_processes import bind_listeners, supervise
script, port = sys.argv[1], int(sys.argv[2])
command = lambda fd, index: [sys.executable, "-c", script, str(fd)]
listeners = bind_listeners("127.0.0.1", port, 2, balance="reuseport")
raise SystemExit(supervise(listeners, 2, command))
"""


def test_with_a_socket_per_worker_a_successor_accepts_before_its_predecessor_drains(
    supervisor_of: list[subprocess.Popen[bytes]],
) -> None:
    """SIGHUP with a socket per worker: nobody else accepts on a replaced worker's socket, so
    its successor is started first and the worker drained once the successor accepts; new
    connections never wait for a drain (1.5 s here, 20 s with live streams) and a start."""
    port = _free_port()
    supervisor = subprocess.Popen(
        [sys.executable, "-c", _OVERLAPPING_SUPERVISOR, _SLOW_STARTING_DRAINING_SERVER, str(port)],
        cwd=ROOT,
    )
    supervisor_of.append(supervisor)

    def ask() -> tuple[int, float]:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(b"GET / HTTP/1.0\r\n\r\n")
            answer = b""
            while chunk := connection.recv(4096):
                answer += chunk
        return int(answer.rpartition(b"\r\n\r\n")[2]), time.monotonic() - started

    _wait_for(lambda: len(_children(supervisor.pid)) == 2, 20, "two workers")
    _wait_for(lambda: len({ask()[0] for _ in range(20)}) == 2, 20, "both workers answering")
    before = set(_children(supervisor.pid))
    supervisor.send_signal(signal.SIGHUP)
    answers = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        answers.append(ask())
        if len(_children(supervisor.pid)) == 2 and not before & set(_children(supervisor.pid)):
            break  # both replaced and drained
        time.sleep(0.02)
    after = set(_children(supervisor.pid))
    assert len(after) == 2
    assert not before & after
    slowest = max(took for _, took in answers)
    assert slowest < 1.0, f"a connection waited {slowest:.2f} s during the replacement"
    assert {pid for pid, _ in answers} & after  # the successors answered during it


@pytest.mark.postgres
def test_two_workers_serve_one_region(
    postgres_url: str,
    redis_url: str,
    tmp_path: Path,
    supervisor_of: list[subprocess.Popen[bytes]],
) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    environ = os.environ | {
        "GUAHAO_DATA_DIR": str(tmp_path / "data"),
        "GUAHAO_DATABASE_URL": postgres_url,
        "GUAHAO_REDIS_URL": redis_url,
        "GUAHAO_SEARCH_INDEX_DIR": str(tmp_path / "search"),
        "GUAHAO_RUN_JOBS": "false",  # serving is what is tested; jobs only slow the start
        "GUAHAO_GC_YOUNG_THRESHOLD": "12345",
        "GUAHAO_METRICS_TOKEN": "a-scrapers-token-of-32-characters-at-least",
    }
    # The bench's launcher: the supervisor and workers of `guahao serve --workers`, without its
    # refusal of the embedded search index (nothing here changes what a search would see).
    output = tmp_path / "workers.log"  # the workers' console: the SMS codes they send
    with output.open("wb") as sink:
        supervisor = subprocess.Popen(
            # one shared socket: the test steers requests by stopping a worker (SIGSTOP),
            # which the default balance (a socket per worker) would leave waiting for it
            [
                sys.executable,
                "-m",
                "bench.serve_workers",
                "--port",
                str(port),
                "--workers",
                "2",
                "--balance",
                "shared",
            ],
            cwd=ROOT,
            env=environ,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    supervisor_of.append(supervisor)
    _wait_for(
        lambda: len(_children(supervisor.pid)) == 2 and _answers(f"{base}/health"),
        90,
        "two platform workers",
    )
    # Both workers up (each answers /health while the other is stopped).
    first, second = _children(supervisor.pid)
    for stopped in (first, second):
        os.kill(stopped, signal.SIGSTOP)
        try:
            _wait_for(lambda: _answers(f"{base}/health"), 60, "the other worker")
        finally:
            os.kill(stopped, signal.SIGCONT)

    phone, password = "13800138000", "correct-horse-9"
    # No keep-alive: each request must find whichever worker is running now.
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=base, timeout=30, limits=no_reuse) as http:
        os.kill(second, signal.SIGSTOP)  # registration asks one worker for a code …
        try:
            sent = http.post("/api/v1/accounts", json={"phone": phone, "password": password})
        finally:
            os.kill(second, signal.SIGCONT)
        assert sent.status_code == 202, sent.text
        code = _code_sent(output, phone)
        os.kill(first, signal.SIGSTOP)  # … and the other confirms it
        try:
            made = http.post("/api/v1/accounts/confirm", json={"phone": phone, "code": code})
        finally:
            os.kill(first, signal.SIGCONT)
        assert made.status_code == 201, made.text
        os.kill(first, signal.SIGSTOP)
        try:
            signed_in = http.post("/api/v1/auth/token", json={"phone": phone, "password": password})
            assert signed_in.status_code == 200, signed_in.text
            token = signed_in.json()["accessToken"]
        finally:
            os.kill(first, signal.SIGCONT)
        os.kill(second, signal.SIGSTOP)  # a token issued by one worker is honoured by the other
        try:
            mine = http.get("/api/v1/me/patients", headers={"Authorization": f"Bearer {token}"})
        finally:
            os.kill(second, signal.SIGCONT)
        assert mine.status_code == 200, mine.text

        # each worker set its collector as `guahao serve` does (collector_settings.py)
        scraper = {"Authorization": "Bearer a-scrapers-token-of-32-characters-at-least"}
        for stopped in (first, second):
            os.kill(stopped, signal.SIGSTOP)
            try:
                exposed = http.get("/metrics", headers=scraper)
            finally:
                os.kill(stopped, signal.SIGCONT)
            assert exposed.status_code == 200, exposed.text
            assert "\nguahao_gc_young_threshold 12345.0\n" in exposed.text
            frozen = re.search(r"\nguahao_gc_frozen_objects (\d+)\.0\n", exposed.text)
            assert frozen is not None
            assert int(frozen[1]) > 10_000

    supervisor.kill()  # no clean-up code runs in the supervisor: the workers stop by themselves
    supervisor.wait()
    _wait_for(lambda: not any(_alive(pid) for pid in (first, second)), 30, "workers stopped")
