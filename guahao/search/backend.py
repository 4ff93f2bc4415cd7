"""The search backend port: one protocol, two implementations chosen by settings.

``embedded`` (SQLite FTS5 in its own file, no server) is the default; ``meilisearch`` is the
production engine. Both take the same documents and the same ``SearchRequest``, and one
conformance suite (tests/integration/test_search_conformance.py) runs against each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from guahao.search.documents import Kind, SearchDocument
from guahao.search.query import SearchRequest, SearchResult

__all__ = ["Progress", "SearchBackend"]

Progress = Callable[[int, int], None]


class SearchBackend(Protocol):
    """Stores documents and answers requests; every write is idempotent."""

    name: str

    async def replace_all(
        self, documents: Iterable[SearchDocument], total: int, progress: Progress | None = None
    ) -> int:
        """Build a complete new index from ``documents`` and swap it in atomically: readers
        see the old index until the new one is whole, never a half-built one."""
        ...

    async def upsert(self, documents: Sequence[SearchDocument]) -> None:
        """Add or replace documents by id."""
        ...

    async def delete(self, ids: Sequence[str]) -> None:
        """Remove documents by id (unknown ids are ignored)."""
        ...

    async def documents(
        self,
        *,
        kind: Kind,
        hospital_id: str | None = None,
        department_id: str | None = None,
        catalog_codes: Sequence[str] = (),
    ) -> list[SearchDocument]:
        """Stored documents of one kind, optionally of one hospital, department or catalog
        codes (a subject code also selects its specialities). A backend may leave the tokens
        out; ``upsert`` of a document without tokens keeps the ones indexed."""
        ...

    async def search(self, request: SearchRequest) -> SearchResult:
        """Execute a planned request: hits of the page, total, facets."""
        ...

    async def count(self) -> int:
        """Documents in the live index."""
        ...

    async def close(self) -> None: ...
