"""Static files: served from memory with a gzip made once per process, never per request.

The compression middleware used to gzip ``/static/vendor/swagger-ui-bundle.js`` (1.7 MB) at
level 9 on the event loop for every request; the stall itself is tested beside the other
hostile inputs in test_hostile_inputs_stall.py. Here: the answers are the files' bytes, a
browser's revalidation is a 304, and nothing outside the directory is reachable.
"""

from __future__ import annotations

import gzip

import httpx
import pytest

from guahao.bootstrap import Platform
from guahao.web.pages import STATIC_DIR

BUNDLE = "vendor/swagger-ui-bundle.js"


@pytest.fixture
def platform(sqlite_platform: Platform) -> Platform:
    """Static files do not depend on the database."""
    return sqlite_platform


async def _raw_get(http: httpx.AsyncClient, path: str, **headers: str) -> httpx.Response:
    """The answer as sent: httpx would otherwise undo the gzip before the test sees it."""
    async with http.stream("GET", path, headers=headers) as answer:
        answer.raw = b"".join([chunk async for chunk in answer.aiter_raw()])  # type: ignore[attr-defined]
        return answer


async def test_a_file_is_sent_gzipped_once_made_and_plain_to_who_does_not_accept_it(
    http: httpx.AsyncClient,
) -> None:
    on_disk = (STATIC_DIR / BUNDLE).read_bytes()
    zipped = await _raw_get(http, f"/static/{BUNDLE}", **{"accept-encoding": "gzip"})
    again = await _raw_get(http, f"/static/{BUNDLE}", **{"accept-encoding": "gzip, br"})
    plain = await _raw_get(http, f"/static/{BUNDLE}", **{"accept-encoding": "identity"})

    assert zipped.status_code == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert "javascript" in zipped.headers["content-type"]
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert zipped.headers["cache-control"] == "public, max-age=3600"
    assert gzip.decompress(zipped.raw) == on_disk  # type: ignore[attr-defined]
    assert again.raw == zipped.raw  # type: ignore[attr-defined]
    assert "content-encoding" not in plain.headers
    assert plain.raw == on_disk  # type: ignore[attr-defined]


async def test_our_own_small_files_and_images_keep_their_types(http: httpx.AsyncClient) -> None:
    css = await http.get("/static/app.css")
    icon = await _raw_get(http, "/static/vendor/favicon-32x32.png", **{"accept-encoding": "gzip"})
    assert css.status_code == 200
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert css.content == (STATIC_DIR / "app.css").read_bytes()
    assert icon.headers["content-type"] == "image/png"
    assert "content-encoding" not in icon.headers  # an image is not compressed again
    assert icon.raw == (STATIC_DIR / "vendor/favicon-32x32.png").read_bytes()  # type: ignore[attr-defined]


async def test_a_browser_revalidating_gets_a_304_and_a_head_no_body(
    http: httpx.AsyncClient,
) -> None:
    first = await http.get("/static/app.js")
    etag = first.headers["etag"]
    again = await http.get("/static/app.js", headers={"if-none-match": etag})
    head = await http.head("/static/app.js", headers={"accept-encoding": "identity"})
    assert again.status_code == 304
    assert again.content == b""
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(first.content))


@pytest.mark.parametrize(
    "path",
    [
        "/static/no-such-file.js",
        "/static/vendor",  # a directory
        "/static/../pages/__init__.py",
        "/static/%2e%2e/pages/__init__.py",
        "/static/vendor/%2e%2e/%2e%2e/app.py",
    ],
)
async def test_nothing_outside_the_directory_or_missing_is_served(
    http: httpx.AsyncClient, path: str
) -> None:
    answer = await http.get(path)
    assert answer.status_code == 404
    assert b"import" not in answer.content
