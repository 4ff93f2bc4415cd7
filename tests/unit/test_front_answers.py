"""The front answers' own pieces: the gzip made as the framework makes it, once per body, and
the search parameters read exactly as the route reads them (or not at all)."""

from __future__ import annotations

import asyncio
import base64
import gc
import gzip
import io
from datetime import date
from typing import Any

import pytest
from litestar.config.compression import CompressionConfig
from litestar.middleware.compression.gzip_facade import GzipCompression

from guahao.platform.client_context import ClientContext
from guahao.platform.personal_data import PersonalDataVault
from guahao.search.query import SearchFilters, SearchQuery
from guahao.web import front_answers
from guahao.web.dependencies import client_context
from guahao.web.front_answers import (
    GZIP_INLINE_LIMIT,
    FrontAnswers,
    GzipBodies,
    _FallThroughError,
    _parameters,
    _search_query,
    compress,
)
from guahao.web.metrics import WebMetrics

VAULT = PersonalDataVault(base64.b64encode(bytes(range(32))).decode())


async def nothing_behind(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("no request goes through in these tests")


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


def test_a_crowds_new_devices_leave_nothing_a_young_collection_walks() -> None:
    """A device's keyed hash is remembered as a string under its bytes and the context is
    made per request, untracked. As an (address, device) tuple and a dataclass context each,
    a release crowd's new citizens stayed tracked until the next young collection, while
    the frees of older objects kept that collection from coming (one young collection then
    walked tens of thousands: the paced crowd's tail). On the previous code this counted
    4 000."""
    front = FrontAnswers(nothing_behind, WebMetrics())
    devices = [f"phone-{n}".encode() for n in range(2_000)]
    front._client(VAULT, "10.0.0.1", b"phone-warm")
    gc.collect()
    gc.disable()  # nothing untracked meanwhile: what is tracked is what a collection walks
    try:
        before = len(gc.get_objects())
        for device in devices:
            last = front._client(VAULT, "10.0.0.1", device)
        grown = len(gc.get_objects()) - before
    finally:
        gc.enable()
    assert last == client_context(VAULT, "10.0.0.1", "phone-1999")
    assert grown < 200


@pytest.mark.parametrize(
    ("host", "device"),
    [("10.0.0.1", b"phone-1"), ("", b"phone-1"), ("10.0.0.1", b""), ("", b""), ("::1", b"x" * 201)],
)
def test_a_remembered_client_is_the_one_the_routes_see(host: str, device: bytes) -> None:
    front = FrontAnswers(nothing_behind, WebMetrics())
    expected = client_context(VAULT, host, device.decode("latin-1"))
    assert front._client(VAULT, host, device) == expected
    assert front._client(VAULT, host, device) == expected  # remembered
    other = PersonalDataVault(base64.b64encode(bytes(32)).decode())  # a new data key
    assert front._client(other, host, device) == client_context(other, host, device.decode())


def test_a_full_memory_of_clients_starts_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(front_answers, "_CLIENTS_KEPT", 3)
    front = FrontAnswers(nothing_behind, WebMetrics())
    for n in range(4):
        context = front._client(VAULT, f"10.0.0.{n}", f"phone-{n}".encode())
        assert context == ClientContext(
            VAULT.index("ip", f"10.0.0.{n}"), VAULT.index("device", f"phone-{n}")
        )
    assert list(front._device_hashes) == [b"phone-3"]
    assert list(front._ip_hashes) == ["10.0.0.3"]
