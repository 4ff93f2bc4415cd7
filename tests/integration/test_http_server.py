"""The HTTP server's connection handling (issue 13: resets under load, nothing logged).

Real uvicorn servers on real sockets, configured exactly as ``guahao serve`` configures
them (``server_config``), in front of a small ASGI application whose answers take as long as
a test needs; the supervisor test runs real processes as an operator would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn

from guahao.config import Settings
from guahao.http_server import accepting_sockets, server_config
from guahao.worker_processes import bind_listener

ROOT = Path(__file__).resolve().parents[2]


async def _app(scope: Any, receive: Any, send: Any) -> None:
    """``/slow``: answers after a second; ``/stream``: starts an answer that never ends (a
    live-availability stream); anything else: answers at once."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            await send({"type": "http.response.body", "body": b"data: tick\n\n", "more_body": True})
            await asyncio.sleep(0.2)
    if path == "/busy":  # holds the event loop itself, as a turn answering a crowd does
        time.sleep(0.1)  # noqa: ASYNC251 - the point: a long turn of the loop
    if path == "/slow":
        if scope["query_string"]:  # ?<file>: say the request is in the application
            Path(scope["query_string"].decode()).touch()  # noqa: ASYNC240 - a test marker
        await asyncio.sleep(1.0)
    body = str(os.getpid()).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _RunningServer:
    def __init__(self, server: uvicorn.Server, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread

    @property
    def port(self) -> int:
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start ``server_config``'s uvicorn on ``_app`` in a thread of its own; stopped after."""
    running: list[_RunningServer] = []

    def start(*, sockets: list[socket.socket] | None = None, **settings: Any) -> _RunningServer:
        config = server_config(_app, msgspec.structs.replace(Settings(), port=0, **settings))
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        running.append(_RunningServer(server, thread))
        return running[-1]

    yield start
    for each in running:
        each.server.should_exit = True
        each.thread.join(timeout=10)


def _get(connection: socket.socket, path: str, extra: str = "") -> bytes:
    connection.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode())
    return connection.recv(65536)


def test_a_keep_alive_connection_idle_past_uvicorns_five_seconds_is_still_served(
    serve: Any,
) -> None:
    """Proxies keep idle upstream connections for 60 s; a server closing them first resets
    whichever request the proxy sends on one at that moment."""
    port = serve().port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        assert _get(connection, "/").startswith(b"HTTP/1.1 200")
        time.sleep(5.5)
        assert _get(connection, "/").startswith(b"HTTP/1.1 200")


def _writes_of(thread: threading.Thread) -> int:
    """Write system calls a thread has made (``syscw`` of its ``/proc`` task)."""
    io = Path(f"/proc/self/task/{thread.native_id}/io").read_text()
    return int(re.search(r"^syscw: (\d+)$", io, re.MULTILINE)[1])  # type: ignore[index]


def _whole_answer(connection: socket.socket, path: str, extra: str = "") -> bytes:
    """One request and its whole answer (head and ``Content-Length`` bytes of body)."""
    connection.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += connection.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE)[1])  # type: ignore[index]
    while len(body) < length:
        body += connection.recv(65536)
    return head + b"\r\n\r\n" + body


def test_an_answer_goes_to_the_socket_in_one_write(serve: Any) -> None:
    """uvicorn writes an answer's head and body separately: two system calls, two wake-ups
    of the reader per answer (44 % of a sold-out answer's samples, bench/profiles/tail-1-*).
    The server sends them as one."""
    running = serve()
    with socket.create_connection(("127.0.0.1", running.port)) as connection:
        first = _whole_answer(connection, "/")
        assert first.startswith(b"HTTP/1.1 200")
        assert first.endswith(str(os.getpid()).encode())
        before = _writes_of(running.thread)
        answers = [_whole_answer(connection, "/") for _ in range(40)]
        writes = _writes_of(running.thread) - before
    assert all(
        a.startswith(b"HTTP/1.1 200") and a.endswith(b"\r\n\r\n" + first.rpartition(b"\r\n\r\n")[2])
        for a in answers
    )
    assert writes <= 45  # one a whole answer (two each without: 80 or more)


def test_an_answer_makes_no_access_line(serve: Any) -> None:
    """uvicorn's access line was never written at the server's log level, but every answer
    formatted its client and path first: a connection makes it only while ``uvicorn.access``
    has a handler, and the server leaves it none (the app logs each request itself)."""
    running = serve()
    with socket.create_connection(("127.0.0.1", running.port)) as connection:
        assert _whole_answer(connection, "/").startswith(b"HTTP/1.1 200")
    assert not logging.getLogger("uvicorn.access").hasHandlers()


def test_a_crowd_connecting_at_once_to_a_busy_server_is_accepted_within_a_few_turns(
    serve: Any,
) -> None:
    """libuv accepts one connection per turn of the loop and per descriptor: with turns of
    100 ms (a worker busy with a crowd), 90 connections opened at once waited about 90 turns,
    some seconds, in the kernel's queue. With ``accepting_sockets`` the loop takes up to 64
    per turn."""
    running = serve(sockets=accepting_sockets(bind_listener("127.0.0.1", 0)))
    address = ("127.0.0.1", running.port)
    stop = threading.Event()

    def keep_busy() -> None:  # one client whose requests each hold the loop for 100 ms
        with socket.create_connection(address, timeout=10) as busy:
            while not stop.is_set():
                _whole_answer(busy, "/busy")

    keeper = threading.Thread(target=keep_busy)
    keeper.start()
    try:
        time.sleep(0.3)  # the loop is now in its long turns
        started = time.monotonic()
        crowd = [socket.create_connection(address, timeout=10) for _ in range(90)]
        try:
            for connection in crowd:
                connection.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            for connection in crowd:
                assert connection.recv(65536).startswith(b"HTTP/1.1 200")
            took = time.monotonic() - started
        finally:
            for connection in crowd:
                connection.close()
    finally:
        stop.set()
        keeper.join(timeout=10)
    assert took < 1.5, f"90 connections answered after {took:.2f} s"  # one a turn: ~3 s or more


def test_a_streamed_answer_still_arrives_piece_by_piece(serve: Any) -> None:
    """Holding writes back lasts one turn of the event loop only: a live stream's head and
    each of its events reach the reader while the stream goes on."""
    running = serve(http_graceful_shutdown_seconds=1)  # the stream never ends by itself
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as connection:
        connection.sendall(b"GET /stream HTTP/1.1\r\nHost: test\r\n\r\n")
        received = b""
        while received.count(b"data: tick") < 3:
            received += connection.recv(65536)
    assert received.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in received


def test_the_server_keeps_idle_connections_longer_than_the_ingress_does() -> None:
    """Only the proxy may close an idle connection between them (docs/operations.md)."""
    ingress = (ROOT / "infra" / "kubernetes" / "ingress.yaml").read_text()
    found = re.search(r'upstream-keepalive-timeout: "(\d+)"', ingress)
    assert found is not None, "the ingress names its upstream keep-alive timeout"
    assert Settings().http_keep_alive_seconds > int(found.group(1))
    settings = (ROOT / "infra" / "kubernetes" / "configmap.yaml").read_text()
    deployed = re.search(r'GUAHAO_HTTP_KEEP_ALIVE_SECONDS: "(\d+)"', settings)
    assert deployed is not None
    assert int(deployed.group(1)) > int(found.group(1))
    pod = (ROOT / "infra" / "kubernetes" / "web-deployment.yaml").read_text()
    grace = re.search(r"terminationGracePeriodSeconds: (\d+)", pod)
    pre_stop = re.search(r"sleep: \{seconds: (\d+)\}", pod)
    assert grace is not None
    assert pre_stop is not None
    assert Settings().http_graceful_shutdown_seconds < int(grace.group(1)) - int(pre_stop.group(1))


def test_a_stopping_server_finishes_the_request_in_flight_and_ends_open_streams(
    serve: Any,
) -> None:
    running = serve(http_graceful_shutdown_seconds=2)
    base = f"http://127.0.0.1:{running.port}"
    with (
        httpx.Client(timeout=10) as client,
        ThreadPoolExecutor(2) as pool,
        client.stream("GET", f"{base}/stream") as stream,
    ):
        next(stream.iter_bytes())  # the stream is open
        slow = pool.submit(httpx.get, f"{base}/slow", timeout=10)
        time.sleep(0.3)  # the slow request is in the application
        stopped_at = time.monotonic()
        running.server.should_exit = True
        assert slow.result().status_code == 200
        running.thread.join(timeout=8)
        assert not running.thread.is_alive(), "an open stream held the server past its grace"
        assert time.monotonic() - stopped_at < 4


def test_a_request_sent_on_an_idle_connection_as_the_server_stops_is_answered(
    serve: Any,
) -> None:
    """wrk and proxies send the next request the moment they have an answer: closing their
    idle connections at shutdown reset those requests."""
    running = serve()
    port = running.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        assert _get(connection, "/").startswith(b"HTTP/1.1 200")
        running.server.should_exit = True
        deadline = time.monotonic() + 5
        while True:  # until the server has stopped accepting: its shutdown has begun
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                break
            assert time.monotonic() < deadline, "the server kept accepting"
            time.sleep(0.02)
        answer = _get(connection, "/")
        assert answer.startswith(b"HTTP/1.1 200")
        assert b"connection: close" in answer.lower()


def test_a_connection_lost_before_its_answer_is_logged_with_its_request_id(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    port = serve().port
    with caplog.at_level(logging.INFO, logger="guahao.http_server"):
        connection = socket.create_connection(("127.0.0.1", port), timeout=5)
        connection.sendall(b"POST /slow HTTP/1.1\r\nHost: t\r\nX-Request-ID: r-42\r\n\r\n")
        time.sleep(0.2)  # the request is in the application
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()  # a reset, as a client giving up or a proxy timing out sends
        deadline = time.monotonic() + 3
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.05)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "POST /slow" in record.getMessage()
    assert "request_id=r-42" in record.getMessage()


_WORKER = """
import sys, msgspec, uvicorn, socket
sys.path.insert(0, sys.argv[2])
from tests.integration.test_http_server import _app
from guahao.config import Settings
from guahao.http_server import accepting_sockets, server_config
from guahao.worker_processes import bind_listener
server = uvicorn.Server(server_config(_app, Settings()))
server.run(sockets=[socket.socket(fileno=int(sys.argv[1]))])
"""

_SUPERVISOR = """
import sys
from guahao.worker_processes import bind_listener, supervise
script, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
command = lambda fd, index: [sys.executable, "-c", script, str(fd), root]
raise SystemExit(supervise(bind_listener("127.0.0.1", port), 1, command))
"""


def test_sighup_replaces_a_worker_only_after_it_finished_its_request_in_flight(
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    supervisor = subprocess.Popen(
        [sys.executable, "-c", _SUPERVISOR, _WORKER, str(port), str(ROOT)], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                first = httpx.get(f"{base}/", timeout=2).text
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the worker did not start"
                time.sleep(0.1)
        with ThreadPoolExecutor(1) as pool:
            arrived = tmp_path / "arrived"
            slow = pool.submit(httpx.get, f"{base}/slow?{arrived}", timeout=10)
            while not arrived.exists():
                assert time.monotonic() < deadline + 10, "the slow request never arrived"
                time.sleep(0.02)
            supervisor.send_signal(signal.SIGHUP)
            answer = slow.result()
        assert (answer.status_code, answer.text) == (200, first)
        # served by the replacement; the parent's socket queued it meanwhile
        assert httpx.get(f"{base}/", timeout=15).text not in ("", first)
        assert supervisor.poll() is None
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=30)
