"""Our CSS and scripts and the vendored files (``guahao/web/static``), served from memory with
their gzip made once per process, in a worker thread.

The app's compression middleware gzips each answer on the event loop, per request, at level
9: that is right for a page or a JSON answer of a few kilobytes, but the API explorer's
``swagger-ui-bundle.js`` is 1.7 MB, 60 ms of CPU per request on a quiet core, during which the
worker answers nobody (a handful of people opening ``/schema`` at a release would stall every
hold behind them). Static files never change while a process runs, so each is read and
compressed once, off the loop, and every later request is a dictionary lookup; ``/static/`` is
therefore left out of the middleware (guahao/web/app.py).

The answers are what Litestar's static files router gave (media type, one hour of public
caching) plus an ``ETag`` so a browser's revalidation costs a 304, and ``Vary:
Accept-Encoding`` because the same URL has two bodies.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyio import to_thread
from litestar import Request, Response, Router, route
from litestar.enums import HttpMethod
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

__all__ = ["COMPRESS_FROM_BYTES", "StaticAsset", "StaticFiles", "static_assets_router"]

COMPRESS_FROM_BYTES = 500
"""Smaller files go out as they are, as the middleware's ``minimum_size`` does for answers."""

CACHE_CONTROL = "public, max-age=3600"

COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml")


@dataclass(frozen=True)
class StaticAsset:
    media_type: str
    plain: bytes
    gzipped: bytes | None
    etag: str

    def answer(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        headers = {"Cache-Control": CACHE_CONTROL, "ETag": self.etag}
        if self.gzipped is not None:
            headers["Vary"] = "Accept-Encoding"
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(b"", status_code=304, headers=headers)
        body = self.plain
        if self.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            body = self.gzipped
        if request.method == HttpMethod.HEAD:
            headers["Content-Length"] = str(len(body))
            return Response(b"", media_type=self.media_type, headers=headers)
        return Response(body, media_type=self.media_type, headers=headers)


def _load(path: Path) -> StaticAsset:
    """Read and compress one file: run in a worker thread (the whole point of this module)."""
    plain = path.read_bytes()
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    compressible = len(plain) >= COMPRESS_FROM_BYTES and media_type.startswith(COMPRESSIBLE)
    # mtime 0: the same file always gives the same bytes (and the same gzip in every worker)
    gzipped = gzip.compress(plain, compresslevel=9, mtime=0) if compressible else None
    return StaticAsset(media_type, plain, gzipped, f'"{hashlib.sha256(plain).hexdigest()[:20]}"')


class StaticFiles:
    """One process's files under ``root``, each read once even when many ask for it at once.

    Only files found are kept (a bounded set: the directory's files); a name that finds
    nothing is looked up again next time, so a client asking for random names fills nothing."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()
        self._loads: dict[str, asyncio.Task[StaticAsset | None]] = {}

    async def asset(self, name: str) -> StaticAsset | None:
        load = self._loads.get(name)
        if load is None:
            # a task of its own: a requester that goes away does not cancel the others' load
            load = asyncio.ensure_future(to_thread.run_sync(self._find, name))
            self._loads[name] = load
            load.add_done_callback(lambda done: self._forget_unless_found(name, done))
        return await asyncio.shield(load)

    def _forget_unless_found(self, name: str, done: asyncio.Task[StaticAsset | None]) -> None:
        if done.cancelled() or done.exception() is not None or done.result() is None:
            self._loads.pop(name, None)

    def _find(self, name: str) -> StaticAsset | None:
        path = (self._root / name).resolve()
        if not path.is_relative_to(self._root) or not path.is_file():
            return None  # outside the directory (``..``, a symlink out) or not a file
        return _load(path)


def static_assets_router(root: Path) -> Router:
    """``/static/…``: the files of ``root``, read into memory once per process."""
    files = StaticFiles(root)

    @route("/{name:path}", http_method=[HttpMethod.GET, HttpMethod.HEAD], name="static")
    async def serve(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
        asset = await files.asset(name.lstrip("/"))
        if asset is None:
            raise NotFoundException()
        return asset.answer(request)

    return Router(path="/static", route_handlers=[serve], include_in_schema=False)
