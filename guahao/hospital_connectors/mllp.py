"""MLLP (the Minimal Lower Layer Protocol of HL7 v2) over asyncio streams.

A frame is ``0x0B`` + message + ``0x1C 0x0D``. The listener answers each message with what
its handler returns (an ACK or NAK) on the same connection, in order; the client sends one
message and waits for its ACK. Bytes outside a frame are dropped, a frame larger than
``MAX_FRAME`` closes the connection (no unbounded buffering from a broken peer).

With an ``ssl`` context the listener speaks MLLP over TLS and, when the context requires one,
learns the client certificate: the handler receives it as a ``Peer`` with the certificate's
fingerprint, which is what binds a connection to a hospital (``mllp_senders``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections.abc import Awaitable, Callable

import msgspec

from guahao.hospital_connectors.failures import RetryableError
from guahao.platform.task_stops import cancel_and_wait, raise_if_cancelling

__all__ = [
    "MAX_FRAME",
    "MllpClient",
    "MllpServer",
    "Peer",
    "frame",
    "read_frame",
    "server_ssl_context",
]

log = logging.getLogger(__name__)

START, END, CR = b"\x0b", b"\x1c", b"\x0d"
MAX_FRAME = 1 << 20
"""1 MiB: far above any SIU or ADT message."""

IDLE_SECONDS = 300.0
"""A connection that sends nothing for this long is closed (a HIS reconnects on its next
message), so idle or half-open connections cannot pile up."""


class Peer(msgspec.Struct, frozen=True):
    """What the connection itself says about the sender (never what the message says)."""

    host: str
    port: int = 0
    certificate_sha256: str = ""
    """SHA-256 of the client certificate (DER, lower-case hex) presented over TLS; empty
    without TLS or without a client certificate."""


Handler = Callable[[bytes, Peer], Awaitable[str]]


def frame(message: str) -> bytes:
    r"""Wrap one message for the wire.

    >>> frame("MSH|^~\\&|A\r")
    b'\x0bMSH|^~\\&|A\r\x1c\r'
    """
    return START + message.encode("utf-8") + END + CR


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next framed message's bytes, or None at the end of the stream."""
    while True:  # drop whatever precedes the start byte, a buffer at a time
        try:
            await reader.readuntil(START)
            break
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)
        except asyncio.IncompleteReadError:
            return None
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

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, limit=MAX_FRAME, ssl=self._ssl
        )
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = _peer_of(writer)
        try:
            while True:
                raise_if_cancelling()  # a stop's cancel lost in the last round still ends it
                try:
                    async with asyncio.timeout(IDLE_SECONDS):  # never drops a cancel
                        message = await read_frame(reader)
                except ValueError:
                    log.warning("MLLP peer %s sent an oversized frame; closing", peer.host)
                    break
                except TimeoutError:
                    break
                if message is None:
                    break
                try:
                    reply = await self._handler(message, peer)
                except Exception:  # the handler broke: the sender must send again (AE)
                    log.exception("MLLP handler failed for a message from %s", peer)
                    reply = _nak(message)
                writer.write(frame(reply))
                await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # every connection ended before the platform's resources close under it
            await asyncio.gather(
                *(cancel_and_wait(task) for task in list(self._connections)),
                return_exceptions=True,
            )
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None


def server_ssl_context(certificate: str, key: str, client_ca: str = "") -> ssl.SSLContext | None:
    """The listener's TLS context from PEM files, or None for plain MLLP (no certificate).

    With ``client_ca`` a client certificate is required and its chain checked; which hospital
    a certificate speaks for is then pinned by fingerprint in each connector's binding.
    """
    if not certificate and not key:
        if client_ca:
            raise ValueError("MLLP client CA given without a server certificate and key")
        return None
    if not (certificate and key):
        raise ValueError("MLLP over TLS needs both a certificate and its key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    if client_ca:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _peer_of(writer: asyncio.StreamWriter) -> Peer:
    address = writer.get_extra_info("peername") or ("?", 0)
    fingerprint = ""
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is not None:
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            fingerprint = hashlib.sha256(der).hexdigest()
    return Peer(str(address[0]), int(address[1]), fingerprint)


class MllpClient:
    """Sends messages to one MLLP listener and returns each ACK; reconnects as needed."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._host, self._port, self._timeout = host, port, timeout
        self._ssl = ssl_context
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
                            asyncio.open_connection(
                                self._host, self._port, limit=MAX_FRAME, ssl=self._ssl
                            ),
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
                except (OSError, TimeoutError, ConnectionError, ssl.SSLError) as exc:
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
