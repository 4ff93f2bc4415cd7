"""Requests written byte by byte on a raw socket, as an attacker sends them: a chunked body
that never ends, or a ``Content-Length`` far larger than what follows. httpx cannot be told to
keep sending after the server has answered; these helpers stop as soon as it has."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import msgspec

__all__ = ["raw_post"]


async def raw_post(
    base_url: str,
    path: str,
    headers: dict[str, str],
    *,
    total: int,
    chunked: bool = True,
    announce: int | None = None,
) -> tuple[int, dict[str, object], int]:
    """POST ``total`` bytes to ``path`` over a raw socket, chunked (or with a
    ``Content-Length`` of ``announce``), stopping as soon as the server answers.

    Returns the status, the decoded JSON body and how many body bytes were sent.
    """
    url = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    head = [f"POST {path} HTTP/1.1", f"Host: {url.netloc}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {announce}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))

    async def response() -> tuple[int, dict[str, object]]:
        raw_head = await reader.readuntil(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        body = await reader.readexactly(int(fields["content-length"]))
        return int(lines[0].split()[1]), msgspec.json.decode(body)

    answered = asyncio.create_task(response())
    block = b"x" * (256 * 1024)
    sent = 0
    try:
        while sent < total and not answered.done():
            if chunked:
                writer.write(b"%x\r\n%s\r\n" % (len(block), block))
            else:
                writer.write(block)
            sent += len(block)
            await writer.drain()
        if chunked and not answered.done():
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except ConnectionError:
        pass  # the server answered and closed while the rest was still on its way
    try:
        async with asyncio.timeout(60):
            status, body = await answered
    finally:
        writer.close()
    return status, body, sent
