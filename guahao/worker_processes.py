"""Several ``guahao serve`` processes on one port (``--workers N``).

One Python process answers on one core at most; a region's release peak needs more. The
parent binds the port and starts N children that inherit its listening sockets, each a whole
platform process (its own pools, caches and event loop), sharing nothing but what the
settings point at: PostgreSQL, Redis and Meilisearch. The parent serves nothing itself; it
restarts a child that dies, replaces them one at a time on SIGHUP (each drained: it stops
accepting and finishes its requests, while the parent's sockets keep queueing new connections
for the others or its successor; ``supervise`` says in which order), and stops them all on
SIGTERM or Ctrl+C. Children die with the parent even when
it is killed outright (``child_processes.die_with_parent``), so no orphan keeps the port.

How the connections are spread (``http_accept_balance``):

- ``reuseport`` (the default): one ``SO_REUSEPORT`` socket per worker, all bound to the port,
  and the kernel hands each new connection to one of them by a hash of its addresses, so each
  worker gets about 1/N of the crowd. With one shared socket, every worker's event loop
  (libuv) accepts what is queued when it wakes, so a crowd opening 1 000 connections at
  once was split 621 : 379 and 165 : 835 between two workers in two bench runs; at the same
  offered load a socket per worker cut the two-worker p99 from 49.3 to 11.5 ms and from 5.2
  to 2.8 ms (bench/README.md, "Sold-out answers reliably, and the two-worker tail"). The
  price: a connection hashed to a worker that is stalled or has died waits in that worker's
  socket for it (or its successor), where a shared socket would have let another worker take
  it; a worker replaced on SIGHUP has its successor accepting on its socket before it is
  drained (but worker 0 when it binds the HL7 MLLP port).
- ``shared``: one socket every worker accepts from (the first worker to wake takes the
  connection): a stalled or replaced worker's share goes to the others at once, at the cost
  of an uneven spread under a crowd.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from guahao.config import Settings
from guahao.platform.child_processes import die_with_parent

__all__ = [
    "ACCEPT_BALANCES",
    "accepts_on",
    "bind_listener",
    "bind_listeners",
    "migrate_once",
    "refusal",
    "replaced_side_by_side",
    "serve_command",
    "supervise",
]

log = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 1.0
"""Pause before a dead child is replaced, so a child that cannot start does not spin."""

STOP_GRACE_SECONDS = 30.0
"""How long children may finish their requests after SIGTERM before they are killed."""


def refusal(settings: Settings) -> str | None:
    """Why these settings cannot be served by several processes, or ``None``.

    Each embedded default lives inside one process (or one process's private server): two
    workers on them would each have their own, and a citizen's booking made on one would be
    unknown to the other.
    """
    reasons = []
    if not settings.database_url or settings.database_url.startswith("sqlite"):
        reasons.append("the embedded SQLite database (set GUAHAO_DATABASE_URL to PostgreSQL)")
    if not settings.redis_url:
        reasons.append("the embedded Redis (set GUAHAO_REDIS_URL)")
    if settings.search_backend == "embedded":
        reasons.append("the embedded search index (set GUAHAO_SEARCH_BACKEND=meilisearch)")
    if not reasons:
        return None
    return (
        "--workers above 1 needs every worker to share the same services; these settings use "
        + "; ".join(reasons)
        + ". 多进程需要共享的 PostgreSQL、Redis 和 Meilisearch。"
    )


def replaced_side_by_side(settings: Settings) -> Callable[[int], bool]:
    """Which workers' successors may start beside them on SIGHUP (``supervise``'s
    ``overlaps``): all, but worker 0 when it binds the HL7 MLLP port, which two processes
    cannot hold at once."""
    if settings.hl7_mllp_port < 0:
        return lambda _index: True
    return lambda index: index > 0


def migrate_once(settings: Settings) -> None:
    """Bring the schema to head before any worker starts: every worker upgrades at start
    (a no-op at head), and two of them creating the tables of a new database at once collide
    in PostgreSQL's catalogue."""
    from guahao.platform.persistence.database import upgrade

    upgrade(settings.resolved_database_url())


def bind_listener(
    host: str, port: int, backlog: int = 4096, *, reuse_port: bool = False
) -> socket.socket:
    """A listening socket workers inherit (``port`` 0 picks a free one); ``reuse_port``: one
    of a ``SO_REUSEPORT`` group (``bind_listeners``).

    The parent keeps it open for the workers' whole life, so a connection arriving while a
    worker is replaced waits in the ``backlog`` queue instead of being refused.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    listener.listen(backlog)
    listener.set_inheritable(True)
    return listener


ACCEPT_BALANCES = ("reuseport", "shared")
"""The ways ``bind_listeners`` spreads connections over the workers (module docstring)."""


def bind_listeners(
    host: str, port: int, workers: int, backlog: int = 4096, *, balance: str = "reuseport"
) -> list[socket.socket]:
    """The listening sockets of ``workers`` workers on one port (``port`` 0 picks a free
    one): worker ``i`` accepts on ``sockets[i % len(sockets)]``.

    ``reuseport``: one ``SO_REUSEPORT`` socket per worker, so the kernel spreads new
    connections evenly over them; ``shared``: one socket for all. The parent keeps them open
    for the workers' whole life, so connections arriving while a worker is replaced queue.
    """
    if balance not in ACCEPT_BALANCES:
        raise ValueError(f"unknown accept balance {balance!r}; one of {ACCEPT_BALANCES}")
    if balance == "shared" or workers == 1:
        return [bind_listener(host, port, backlog)]
    sockets: list[socket.socket] = []
    try:
        for _ in range(workers):
            sockets.append(bind_listener(host, port, backlog, reuse_port=True))
            port = sockets[0].getsockname()[1]  # the others join the first one's port
    except BaseException:
        for each in sockets:
            each.close()
        raise
    return sockets


READY_WAIT_SECONDS = 120.0
"""How long a successor started beside the worker it replaces may take to start accepting
before that worker is drained anyway (a platform process opens its pools and caches first)."""


def accepts_on(pid: int, listener: socket.socket) -> bool:
    """Whether process ``pid``'s event loop watches ``listener``: one of its epoll instances
    lists the socket (Linux's ``/proc/PID/fdinfo``, by the socket's inode). A worker registers
    its listening socket only once its platform is open and the server started, so this is
    "ready to accept" without any help from the worker."""
    inode = f"ino:{os.fstat(listener.fileno()).st_ino:x}"
    try:
        descriptors = os.listdir(f"/proc/{pid}/fdinfo")
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            info = Path(f"/proc/{pid}/fdinfo/{descriptor}").read_text()
        except OSError:  # closed meanwhile
            continue
        for line in info.splitlines():
            if line.startswith("tfd:") and inode in line.split():
                return True
    return False


def _accepting_within(child: subprocess.Popen[bytes], listener: socket.socket) -> bool:
    """Wait until ``child`` accepts on ``listener`` (True), dies or ``READY_WAIT_SECONDS``
    pass (False)."""
    deadline = time.monotonic() + READY_WAIT_SECONDS
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return False
        if accepts_on(child.pid, listener):
            return True
        time.sleep(0.1)
    return False


class _StopRequestedError(Exception):
    """Raised in the parent by SIGTERM or SIGINT."""


def _raise_stop(_signum: int, _frame: FrameType | None) -> None:
    raise _StopRequestedError


def _drain(child: subprocess.Popen[bytes]) -> int:
    """Stop ``child`` gracefully (SIGTERM: it stops accepting, finishes its requests, then
    exits), killing it only after ``STOP_GRACE_SECONDS``; its exit status."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        return child.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        log.error(
            "worker pid %d did not drain in %.0f s; killing it", child.pid, STOP_GRACE_SECONDS
        )
        child.kill()
        return child.wait()


def serve_command(listen_fd: int, index: int) -> list[str]:
    """Worker ``index``: ``guahao serve`` on the inherited socket ``listen_fd``; only worker 0
    runs the once-per-region start-up work (see ``cli.serve``)."""
    return [
        sys.executable,
        "-m",
        "guahao.cli",
        "serve",
        "--listen-fd",
        str(listen_fd),
        "--worker-index",
        str(index),
    ]


def supervise(
    listeners: socket.socket | list[socket.socket],
    workers: int,
    command: Callable[[int, int], list[str]] = serve_command,
    *,
    overlaps: Callable[[int], bool] = lambda _index: True,
) -> int:
    """Run ``workers`` children, ``command(fd of its listener, index)`` each, until SIGTERM
    or SIGINT; the exit status. Worker ``index`` accepts on ``listeners[index % len]`` (one
    socket: all share it). SIGHUP replaces the children one after another.

    With one shared socket each worker is drained before its successor starts (the others
    take the new connections meanwhile). With a socket per worker nobody else accepts on the
    replaced worker's socket, so when ``overlaps(index)`` the successor is started first and
    the worker drained once the successor accepts (``accepts_on``); otherwise (a worker
    holding something two processes cannot hold at once: ``replaced_side_by_side``) the
    connections hashed to its socket wait there for its successor."""
    sockets = listeners if isinstance(listeners, list) else [listeners]

    def start(index: int) -> subprocess.Popen[bytes]:
        listener = sockets[index % len(sockets)]
        return subprocess.Popen(
            command(listener.fileno(), index),
            pass_fds=(listener.fileno(),),
            preexec_fn=die_with_parent,
        )

    replace_requested = False

    def request_replacement(_signum: int, _frame: FrameType | None) -> None:
        nonlocal replace_requested
        replace_requested = True

    previous = {
        signum: signal.signal(signum, _raise_stop) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, request_replacement)
    children: dict[int, subprocess.Popen[bytes]] = {}
    try:
        for index in range(workers):
            children[index] = start(index)
        while True:
            time.sleep(0.2)
            if replace_requested:
                replace_requested = False
                for index, child in list(children.items()):
                    if len(sockets) > 1 and overlaps(index):
                        successor = start(index)
                        ready = _accepting_within(successor, sockets[index % len(sockets)])
                        drained = _drain(child)
                        log.warning(
                            "worker %d (pid %d) drained (%d) after its successor (pid %d) %s",
                            index,
                            child.pid,
                            drained,
                            successor.pid,
                            "started accepting" if ready else "did not start accepting in time",
                        )
                        children[index] = successor  # a dead one is restarted below
                        continue
                    drained = _drain(child)
                    log.warning(
                        "worker %d (pid %d) drained (%d); replacing it", index, child.pid, drained
                    )
                    children[index] = start(index)
                continue
            for index, child in list(children.items()):
                status = child.poll()
                if status is None:
                    continue
                log.error(
                    "worker %d (pid %d) exited with %d; restarting it", index, child.pid, status
                )
                time.sleep(RESTART_DELAY_SECONDS)
                children[index] = start(index)
    except _StopRequestedError:
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stop_all(list(children.values()))
        for listener in sockets:
            listener.close()


def _stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
