"""Many rows into several tables in one PostgreSQL statement: ``INSERT ... SELECT FROM
unnest(...)``, the tables joined as data-modifying ``WITH`` clauses.

A group commit of granted holds wrote its two tables with Core's ``executemany``: ``BEGIN``,
a statement per table, ``COMMIT``, four round trips, and SQLAlchemy building every row's
parameters (a fifth of a grant's CPU, bench/profiles/grant4-25-*, grant5-26-*). Here each
column travels as one array, every table is written by the one statement, and a single
statement outside a transaction block is its own transaction on PostgreSQL: one round trip,
all rows or none.

The rows are the ones Core's ``insert`` would write: each value goes through its column
type's bind processor (JSON serialised, times as the model keeps them), and a column the
rows leave out gets the model's scalar default (``kind``, ``version``, ``attempts`` ...), or
the server's, exactly as ``insert(table)`` fills them in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Column, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["MissingColumnError", "UnnestInsert"]


class MissingColumnError(ValueError):
    """A row lacks a column its statement carries: nothing was sent."""


@dataclass(frozen=True)
class _TablePart:
    """How one table's rows become parameters: a column's array per carried column, and
    the model's defaults, sent once, for the columns the rows leave out."""

    table: str
    carried: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    defaults: tuple[Any, ...]


class UnnestInsert:
    """One statement inserting rows into each of ``tables`` (in order), for rows that all
    carry the columns named beside each table.

    >>> from sqlalchemy import Integer, MetaData, String
    >>> from sqlalchemy.dialects import postgresql
    >>> t = Table("t", MetaData(), Column("id", String(8), primary_key=True),
    ...           Column("n", Integer, default=0))
    >>> print(UnnestInsert(postgresql.dialect(), (t, ("id",))).sql)
    INSERT INTO t (id, n) SELECT r.id, $2::INTEGER FROM unnest($1::VARCHAR(8)[]) AS r(id)
    """

    def __init__(self, dialect: Dialect, *tables: tuple[Table, Sequence[str]]) -> None:
        quote = dialect.identifier_preparer.quote
        statements: list[str] = []
        self._parts: list[_TablePart] = []
        number = 0
        for table, carried in tables:
            columns = [table.c[name] for name in carried]
            left_out = [c for c in table.columns if c.name not in carried and _scalar_default(c)]
            arrays, selected = [], []
            for column in columns:
                number += 1
                json = isinstance(column.type, JSON)
                element = "TEXT" if json else column.type.compile(dialect=dialect)
                arrays.append(f"${number}::{element}[]")
                selected.append(f"r.{quote(column.name)}" + ("::JSON" if json else ""))
            for column in left_out:
                number += 1
                selected.append(f"${number}::{column.type.compile(dialect=dialect)}")
            names = ", ".join(quote(c.name) for c in columns + left_out)
            statements.append(
                f"INSERT INTO {quote(table.name)} ({names}) SELECT {', '.join(selected)} "
                f"FROM unnest({', '.join(arrays)}) "
                f"AS r({', '.join(quote(c.name) for c in columns)})"
            )
            self._parts.append(
                _TablePart(
                    table=table.name,
                    carried=tuple(carried),
                    processors=tuple(c.type.bind_processor(dialect) for c in columns),
                    defaults=tuple(_processed_default(c, dialect) for c in left_out),
                )
            )
        *first, last = statements
        ctes = ", ".join(f"w{n} AS ({sql})" for n, sql in enumerate(first))
        self.sql = f"WITH {ctes} {last}" if first else last

    def parameters(self, *rows: Sequence[Mapping[str, Any]]) -> tuple[Any, ...]:
        """The statement's parameters for ``rows``, one sequence of rows per table.

        Every row must carry the statement's columns (a caller batches rows of one shape:
        ``HoldCommits`` does); one that lacks one is refused with ``MissingColumnError``
        before anything is sent, rather than a bare ``KeyError``.

        >>> from sqlalchemy import MetaData, String
        >>> from sqlalchemy.dialects import postgresql
        >>> t = Table("t", MetaData(), Column("id", String(8), primary_key=True),
        ...           Column("name", String(8)))
        >>> insert = UnnestInsert(postgresql.dialect(), (t, ("id", "name")))
        >>> insert.parameters([{"id": "a", "name": "x"}, {"id": "b", "name": "y"}])
        (['a', 'b'], ['x', 'y'])
        >>> insert.parameters([{"id": "a", "name": "x"}, {"id": "b"}])
        Traceback (most recent call last):
        ...
        guahao.platform.persistence.unnest_inserts.MissingColumnError: row 1 for t lacks name
        """
        values: list[Any] = []
        for part, table_rows in zip(self._parts, rows, strict=True):
            for name, process in zip(part.carried, part.processors, strict=True):
                try:
                    column = [row[name] for row in table_rows]
                except KeyError:
                    raise _missing(part, table_rows, name) from None
                values.append(column if process is None else [process(v) for v in column])
            values.extend(part.defaults)
        return tuple(values)

    async def execute(
        self, connection: AsyncConnection, *rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Send the statement for ``rows`` (as ``parameters``) on ``connection``, in no
        transaction block: the statement is its own transaction.

        Sent by asyncpg itself, not through SQLAlchemy's cursor: its session, cursor,
        prepared statement cache and greenlet cost 100-180 µs of client CPU a batch
        (bench/group_commit_cost.py, ``driver`` against ``unnest``; bench/profiles/grant6-29).
        So no ``before_cursor_execute`` event sees it, and its errors come back as
        SQLAlchemy's would: a broken constraint (SQLSTATE class 23) as ``IntegrityError``,
        any other error of the server as ``DBAPIError``, and a broken link (the connection's
        state unknown) as ``OperationalError`` after the connection is invalidated, so the
        pool replaces it.
        """
        parameters = self.parameters(*rows)
        raw = await connection.get_raw_connection()
        try:
            await raw.driver_connection.execute(self.sql, *parameters)  # type: ignore[union-attr]
        except Exception as exc:
            sqlstate = getattr(exc, "sqlstate", None)
            if not isinstance(sqlstate, str):
                await connection.invalidate(exc)
                raise OperationalError(self.sql, None, exc, connection_invalidated=True) from exc
            error = IntegrityError if sqlstate.startswith("23") else DBAPIError
            raise error(self.sql, None, exc) from exc


def _missing(part: _TablePart, rows: Sequence[Mapping[str, Any]], name: str) -> MissingColumnError:
    first = next(n for n, row in enumerate(rows) if name not in row)
    return MissingColumnError(f"row {first} for {part.table} lacks {name}")


def _scalar_default(column: Column[Any]) -> bool:
    default = column.default
    return default is not None and getattr(default, "is_scalar", False)


def _processed_default(column: Column[Any], dialect: Dialect) -> Any:
    value = getattr(column.default, "arg", None)
    process = column.type.bind_processor(dialect)
    return value if process is None else process(value)
