"""MLLP (the Minimal Lower Layer Protocol of HL7 v2) over asyncio streams.

A frame is ``0x0B`` + message + ``0x1C 0x0D``. The listener answers each message with what
its handler returns (an ACK or NAK) on the same connection, in order; the client sends one
message and waits for its ACK. Bytes outside a frame are dropped, a frame larger than
``MAX_FRAME`` closes the connection (no unbounded buffering from a broken peer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from guahao.hospital_connectors.failures import RetryableError

__all__ = ["MAX_FRAME", "MllpClient", "MllpServer", "frame", "read_frame"]

log = logging.getLogger(__name__)

START, END, CR = b"\x0b", b"\x1c", b"\x0d"
MAX_FRAME = 1 << 20
"""1 MiB: far above any SIU or ADT message."""

Handler = Callable[[bytes, tuple[str, int]], Awaitable[str]]


def frame(message: str) -> bytes:
    r"""Wrap one message for the wire.

    >>> frame("MSH|^~\\&|A\r")
    b'\x0bMSH|^~\\&|A\r\x1c\r'
    """
    return START + message.encode("utf-8") + END + CR


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next framed message's bytes, or None at the end of the stream."""
    while True:
        byte = await reader.read(1)
        if not byte:
            return None
        if byte == START:
            break
    try:
        body = await reader.readuntil(END + CR)
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise ValueError("MLLP frame too large") from None
    return body[: -len(END + CR)]


def _nak(message: bytes) -> str:
    from guahao.hospital_connectors.hl7_mapping import ack

    return ack(message, "AE", "internal error; send again", control_id="NAK")


class MllpServer:
    """Listens on ``host:port``; ``handler(message, peer)`` returns the reply to send."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, limit=MAX_FRAME
        )
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername") or ("?", 0)
        try:
            while True:
                try:
                    message = await read_frame(reader)
                except ValueError:
                    log.warning("MLLP peer %s sent an oversized frame; closing", peer)
                    break
                if message is None:
                    break
                try:
                    reply = await self._handler(message, (str(peer[0]), int(peer[1])))
                except Exception:  # the handler broke: the sender must send again (AE)
                    log.exception("MLLP handler failed for a message from %s", peer)
                    reply = _nak(message)
                writer.write(frame(reply))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None


class MllpClient:
    """Sends messages to one MLLP listener and returns each ACK; reconnects as needed."""

    def __init__(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        self._host, self._port, self._timeout = host, port, timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def send(self, message: str) -> str:
        """One message, its ACK as text; ``RetryableError`` if the peer cannot be reached."""
        async with self._lock:
            for attempt in range(2):  # a stale pooled connection gets one fresh retry
                try:
                    if self._writer is None:
                        self._reader, self._writer = await asyncio.wait_for(
                            asyncio.open_connection(self._host, self._port, limit=MAX_FRAME),
                            self._timeout,
                        )
                    assert self._reader is not None
                    assert self._writer is not None
                    self._writer.write(frame(message))
                    await self._writer.drain()
                    reply = await asyncio.wait_for(read_frame(self._reader), self._timeout)
                    if reply is None:
                        raise ConnectionResetError("closed before the ACK")
                    return reply.decode("utf-8", errors="replace")
                except (OSError, TimeoutError, ConnectionError) as exc:
                    await self.close()
                    if attempt == 1:
                        raise RetryableError(
                            "HIS_UNAVAILABLE", f"MLLP {self._host}:{self._port}: {exc!r}"
                        ) from exc
            raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._reader = self._writer = None
