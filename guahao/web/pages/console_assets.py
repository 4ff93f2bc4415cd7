"""The console's chart script: ECharts reduced to the parts the console draws with, served
pre-compressed under a name that changes with its content, so a browser keeps it for a year.

``infra/build_web_bundles.sh`` builds ``static/vendor/echarts-console.min.js`` and its gzip at
set-up time (esbuild over ``infra/web_bundles/echarts_console.mjs``). This module reads both
once per process, when the console router is made; the response is the gzip as built (never
compressed per request, which would hold the event loop for a 500 KB script), or the plain
file for a client that does not accept gzip.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

__all__ = ["CHARTS_BUNDLE", "ChartsBundle", "ConsoleAssets", "charts_bundle"]

log = logging.getLogger(__name__)

CHARTS_BUNDLE = Path(__file__).resolve().parent.parent / "static/vendor/echarts-console.min.js"

IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class ChartsBundle:
    plain: bytes
    gzipped: bytes

    @functools.cached_property
    def url(self) -> str:
        digest = hashlib.sha256(self.plain).hexdigest()[:16]
        return f"/console/assets/echarts-{digest}.js"


@functools.cache
def charts_bundle() -> ChartsBundle:
    """The built bundle (empty, with a warning, where set-up has not built it: the chart
    pages then show their tables only)."""
    try:
        return ChartsBundle(
            CHARTS_BUNDLE.read_bytes(),
            CHARTS_BUNDLE.with_name(CHARTS_BUNDLE.name + ".gz").read_bytes(),
        )
    except FileNotFoundError:
        log.warning("%s is missing: run infra/setup.sh (infra/build_web_bundles.sh)", CHARTS_BUNDLE)
        return ChartsBundle(b"", b"")


class ConsoleAssets(Controller):
    path = "/console/assets"
    include_in_schema = False

    @get("/{name:str}", name="console_asset")
    async def asset(self, request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
        bundle = charts_bundle()
        if not bundle.plain or f"/console/assets/{name}" != bundle.url:
            raise NotFoundException()
        headers = {"Cache-Control": IMMUTABLE, "Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            body = bundle.gzipped
        else:
            body = bundle.plain
        return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)
