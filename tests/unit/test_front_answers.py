"""The front answers' own pieces: the gzip made as the framework makes it, once per body, and
the search parameters read exactly as the route reads them (or not at all)."""

from __future__ import annotations

import asyncio
import gzip
import io
from datetime import date

import pytest
from litestar.config.compression import CompressionConfig
from litestar.middleware.compression.gzip_facade import GzipCompression

from guahao.search.query import SearchFilters, SearchQuery
from guahao.web.front_answers import (
    GZIP_INLINE_LIMIT,
    GzipBodies,
    _FallThroughError,
    _parameters,
    _search_query,
    compress,
)


def litestar_gzip(body: bytes) -> bytes:
    buffer = io.BytesIO()
    facade = GzipCompression(buffer, "gzip", CompressionConfig(backend="gzip"))
    facade.write(body)
    facade.close()
    return buffer.getvalue()


def test_the_gzip_is_the_frameworks_bytes_but_for_the_time_in_its_header() -> None:
    body = b'{"hits":[' + b'{"name":"\xe5\xbf\x83\xe5\x86\x85\xe7\xa7\x91"},' * 300 + b"{}]}"
    ours, theirs = compress(body), litestar_gzip(body)
    assert len(ours) == len(theirs)
    assert ours[:4] + ours[8:] == theirs[:4] + theirs[8:]  # bytes 4-8: the modification time
    assert gzip.decompress(ours) == body


async def test_a_large_body_is_gzipped_once_off_the_loop_for_every_request_asking() -> None:
    bodies = GzipBodies(size=2)
    body = b"x" * (GZIP_INLINE_LIMIT * 4)
    first, second = await asyncio.gather(bodies.of(body), bodies.of(body))
    assert first is second
    assert await bodies.of(body) is first
    assert gzip.decompress(first) == body
    for other in (b"a" * 600, b"b" * 600):  # the oldest goes past the size
        await bodies.of(other)
    assert len(bodies) == 2
    assert await bodies.of(body) is not first


def test_search_parameters_are_read_as_the_route_reads_them() -> None:
    query = _search_query(
        b"q=%E5%BF%83%E5%86%85+%E7%A7%91&kind=doctor&kind=department&pageSize=10"
        b"&withinDays=7&date=2026-03-04&facets=false&sort=next_available&page=2"
    )
    assert query == SearchQuery(
        q="心内 科",
        filters=SearchFilters(
            kind=("doctor", "department"), within_days=7, on_date=date(2026, 3, 4)
        ),
        sort="next_available",
        page=2,
        page_size=10,
        facets=False,
    )
    assert _search_query(b"") == SearchQuery()


@pytest.mark.parametrize(
    "query_string",
    [
        b"q=a&q=b",  # a scalar given twice
        b"q=a&unknown=1",  # a parameter the route ignores: its answer may differ one day
        b"q",  # no "="
        b"q=%FF",  # not UTF-8
        b"page=02",  # a number written unusually
        b"facets=True",
        b"date=2026-3-4",
        b"q=" + "王".encode() * 101,  # over the route's max_length
    ],
)
def test_parameters_read_in_any_other_way_fall_through(query_string: bytes) -> None:
    with pytest.raises(_FallThroughError):
        _search_query(query_string)


@pytest.mark.parametrize(
    "query_string",
    [
        b"q=%E5%BF%83+a%2Bb&kind=doctor&kind=department&x=",
        b"q=%e5%bf%83%20%E5%86%85&&page=3",
        b"q=a%26b%3Dc&district=%E6%9C%9D%E9%98%B3%E5%8C%BA",
    ],
)
def test_parameters_decode_as_litestars_parser_decodes_them(query_string: bytes) -> None:
    from litestar._parsers import parse_query_string  # the framework's reading, for the test

    assert _parameters(query_string) == list(parse_query_string(query_string))
