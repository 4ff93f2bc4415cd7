"""How uvicorn serves the platform: timeouts paired with the proxies in front of it.

Under a release surge about one request in 3,000 ended in a connection reset with nothing
logged (issue 13). Three causes, each settled here (bench/README.md, "Connection resets"):

- **Keep-alive race.** uvicorn closes an idle keep-alive connection after 5 s; nginx (ingress
  ``upstream-keepalive-timeout`` 60 s) and most clients keep theirs longer, so a request sent
  on a connection the server has just closed meets a reset. The server's idle timeout must be
  the longer one of each pair, so only the client ever closes an idle connection.
- **Shutdown never ending.** A live-availability stream never finishes on its own, so a worker
  told to stop waited for it until the orchestrator killed the process, cutting every request
  still in flight. The graceful shutdown is bounded, and shorter than Kubernetes' grace.
- **Idle connections closed at shutdown.** uvicorn closed a stopping worker's idle keep-alive
  connections at once, resetting any request a client had just sent on one; they are now
  served a little longer, each answer closing its connection.
- **Silence.** uvicorn logs nothing when a client's connection is lost before its answer was
  sent, which is exactly the case where the client cannot know whether its request took
  effect. :class:`DropLoggingHttpToolsProtocol` logs it with the request id.

Two costs at a release crowd, apart from resets. **Accepting.** libuv (under uvloop)
accepts one connection per turn of the event loop and per listening handle (libuv/libuv#3696):
a worker busy answering, whose turns take milliseconds each, let a crowd's new connections
wait in the kernel's queue, a thousand of them for seconds (484 of 1 000 wrk connections
accepted after 3 s, 515 still queued; bench/README.md, "Sold-out answers reliably, and the
two-worker tail"). :func:`accepting_sockets` gives
the loop ``ACCEPTS_PER_TURN`` handles on the one listening socket, each accepting one
connection per turn. **Writing.** uvicorn writes an answer's head and its body to the socket
separately, two system calls per answer, each waking the client (on loopback, a proxy or a
load generator, often on the same core). At a release that was the largest single cost of a
sold-out answer (``RequestResponseCycle.send``, 44 % of its samples,
bench/profiles/tail-1-*): :class:`CoalescingTransport` sends what one turn of the event loop
wrote as one write.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    import uvicorn

    from guahao.config import Settings

__all__ = [
    "ACCEPTS_PER_TURN",
    "CoalescingTransport",
    "DropLoggingHttpToolsProtocol",
    "accepting_sockets",
    "server_config",
]

log = logging.getLogger("guahao.http_server")

IDLE_DRAIN_SECONDS = 1.0
"""How long a stopping server still answers requests on idle keep-alive connections (each
answer closing its connection) before it closes them; a client that has just sent on one is
served instead of reset. Counts against ``http_graceful_shutdown_seconds``."""


ACCEPTS_PER_TURN = 64
"""New connections one worker takes per turn of its event loop at most (one per handle on
the listening socket). A turn answering a busy crowd takes a few milliseconds, so a thousand
connections arriving together are all accepted within a few dozen milliseconds; an idle
worker pays for the spare handles only when a connection arrives (each of them wakes, and all
but one find the queue empty)."""


def accepting_sockets(listener: socket.socket) -> list[socket.socket]:
    """``listener`` and ``ACCEPTS_PER_TURN - 1`` duplicates of its descriptor, to hand to
    ``uvicorn.Server.serve(sockets=...)``: the kernel keeps one queue of new connections for
    the socket, and the event loop watches each descriptor on its own, so each turn accepts up
    to one connection per descriptor instead of one in all (module docstring)."""
    return [listener] + [
        socket.socket(fileno=os.dup(listener.fileno())) for _ in range(ACCEPTS_PER_TURN - 1)
    ]


_JOIN_UP_TO = 16 * 1024
"""Pieces written in one turn are joined into one ``bytes`` up to this size (a copy cheaper
than a vectored write); beyond it they go as one vectored write, uncopied."""


class CoalescingTransport:
    """The connection's transport, holding back what is written until the end of the event
    loop's current turn and then sending it in one write.

    uvicorn writes a response's head (``http.response.start``) and its body as two
    ``transport.write`` calls, and an application sends both in one turn (nothing in between
    waits): a whole answer becomes one system call and one wake-up of the reader instead of
    two. A streamed body's later chunks, written in later turns, each go in their own turn as
    before; nothing is held longer than the turn it was written in. Closing sends what is held
    first. Everything else is the transport's own (flow control reads and pauses the real
    transport, whose buffer limits still apply).
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def flush(self) -> None:
        """Send what is held now (one write)."""
        held = self._held
        if not held:
            return
        self._held = []
        if self._transport.is_closing():  # the connection is gone: as a write would, drop it
            return
        if len(held) == 1:
            self._transport.write(held[0])
        elif sum(len(piece) for piece in held) <= _JOIN_UP_TO:
            self._transport.write(b"".join(held))
        else:
            self._transport.writelines(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class DropLoggingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, logging each request whose connection was lost before
    its answer was complete.

    WARNING when no answer had started: the application may have acted on the request (a
    hold taken, a payment noted) and the client saw only a reset, so the request id is what
    ties the client's retry to the server's record. INFO when an answer had started (a reader
    leaving a live-availability stream, a download cut short), which is ordinary.
    """

    _draining = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn's flow control keeps the real transport; every write goes through this one
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]

    def shutdown(self) -> None:
        """Stop this connection gracefully: a request in flight is answered with
        ``Connection: close``, as uvicorn does; an idle connection is kept ``IDLE_DRAIN_SECONDS``
        longer instead of being closed at once, and a request arriving meanwhile is answered
        (with ``Connection: close``). Closing it at once reset whatever request the client
        had just sent on it: 4 of 64 wrk connections per worker stopped (bench/README.md).
        """
        if self.cycle is not None and not self.cycle.response_complete:
            super().shutdown()
            return
        self._draining = True
        self.loop.call_later(IDLE_DRAIN_SECONDS, self._close_if_idle)

    def _close_if_idle(self) -> None:
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            scope: Any = cycle.scope
            state = scope.get("state") or {}
            request_id = state.get("request_id") or _header(scope, b"x-request-id") or "-"
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
            level = logging.INFO if cycle.response_started else logging.WARNING
            log.log(
                level,
                "connection lost before the answer was %s: %s %s request_id=%s client=%s (%s)",
                "complete" if cycle.response_started else "sent",
                scope.get("method", "-"),
                scope.get("path", "-"),
                request_id,
                client,
                exc.__class__.__name__ if exc is not None else "closed by the client",
            )
        super().connection_lost(exc)


def _header(scope: Any, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))[:64]
    return None


def server_config(app: Any, settings: Settings) -> uvicorn.Config:
    """The uvicorn configuration of ``guahao serve`` (one process, or each of ``--workers``).

    The keep-alive, backlog and shutdown figures come from settings so an operator can pair
    them with the proxy in front (docs/operations.md, "Connection resets").

    uvicorn's access log is off: at ``log_level="warning"`` its lines were never written,
    yet every answer formatted their client address and quoted path first (the logger is
    asked after its arguments are made), 0.6-0.7 % of a granted hold's samples
    (bench/profiles/front3-1-*). Each request's line is the app's own (``request_log``).
    """
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        http=DropLoggingHttpToolsProtocol,
        timeout_keep_alive=settings.http_keep_alive_seconds,
        backlog=settings.http_backlog,
        timeout_graceful_shutdown=settings.http_graceful_shutdown_seconds,
    )
