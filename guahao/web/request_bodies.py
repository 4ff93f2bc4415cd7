"""How large a request body may be, and reading one without ever holding more than that.

A body is refused at its limit *while it arrives*: a ``Content-Length`` above the limit is
refused before a byte is read, and a chunked (or lying) body is refused as soon as the bytes
received pass the limit, so one request can never make the server hold more than its route
allows (a chunked 1.5 GB POST once raised the server's memory to 4.6 GB before an answer).

Litestar enforces the same limits in ``Request.stream`` (``request_max_body_size`` on the app,
a controller or a handler); code that reads the ASGI ``receive`` itself, before Litestar does
(the idempotency middleware), reads through :func:`read_bounded` with the route's own limit.
"""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler
from litestar.types import Receive, ReceiveMessage, Scope

__all__ = [
    "API_BODY_LIMIT",
    "HOSPITAL_API_BODY_LIMIT",
    "SCHEDULE_FILE_BODY_LIMIT",
    "BodyTooLargeError",
    "body_limit_of",
    "read_bounded",
    "read_within",
    "replaying",
]

API_BODY_LIMIT = 1024 * 1024
"""Citizen, staff and page requests: a JSON document or a form, never near 1 MiB."""

HOSPITAL_API_BODY_LIMIT = 8 * 1024 * 1024
"""The hospital push API: a day's sessions and slots of a large hospital in one push."""

SCHEDULE_FILE_BODY_LIMIT = 16 * 1024 * 1024
"""A CSV or XLSX schedule file: the template's 20,000 rows are about 5 MB as CSV."""


class BodyTooLargeError(Exception):
    """The body passed its limit; nothing of it is kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


def body_limit_of(scope: Scope) -> int:
    """The limit of the route ``scope`` was routed to (its ``request_max_body_size``)."""
    route = scope.get("route_handler")
    if not isinstance(route, HTTPRouteHandler):
        return API_BODY_LIMIT
    resolved = route.resolve_request_max_body_size()
    return API_BODY_LIMIT if resolved is None else resolved


def _announced_length(scope: Scope) -> int | None:
    """The ``Content-Length`` the client announced, if it is a number."""
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_bounded(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body of the request, refused with :class:`BodyTooLargeError` as soon as it
    is known to pass ``limit``: from ``Content-Length`` before reading, or from the bytes
    received while reading (chunked transfer, or a client that sends more than it announced).
    """
    announced = _announced_length(scope)
    if announced is not None and announced > limit:
        raise BodyTooLargeError(limit)
    return await read_within(receive, limit)


async def read_within(receive: Receive, limit: int) -> bytes:
    """``read_bounded`` for a caller that has judged the announced length itself (the
    sold-out answers read the headers once, bench/profiles/refuse-*)."""
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise BodyTooLargeError(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that plays a body already read back to the app (middleware that had to
    read it first: the idempotency store, the sold-out answers), then the rest of the
    connection's messages."""
    sent = False

    async def replay() -> ReceiveMessage:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
