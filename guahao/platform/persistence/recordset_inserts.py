"""Many rows into several tables in one PostgreSQL statement, each table's rows sent as one
JSON document: ``INSERT ... SELECT FROM json_to_recordset($n)``, the tables joined as
data-modifying ``WITH`` clauses.

``UnnestInsert`` (unnest_inserts.py) sent each column as an array: asyncpg's array encoder
checks every element against ``collections.abc`` (``ABCMeta.__instancecheck__``, a Python call
an element: 16 a granted hold) and every JSON value went through the stdlib's ``json.dumps``
by SQLAlchemy's bind processor (bench/profiles/session14-1). Here a table's rows are one
``msgspec`` encoding (their JSON columns nested in it, not encoded apart), one text parameter
that PostgreSQL parses (bench/profiles/commit3-*).

The rows are the ones Core's ``insert`` would write: an aware time as the instant it names
(a naive one is refused, as ``UTCDateTime`` refuses it), a column whose type has any other
bind processor through that processor, and a column the rows leave out gets the model's
scalar default (``kind``, ``version``, ``attempts`` ...), or the server's, as
``insert(table)`` fills them in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import JSON, Column, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from guahao.platform.persistence.tables import UTCDateTime

__all__ = [
    "MissingColumnError",
    "RecordsetInsert",
    "RowsInsert",
    "left_out",
    "one_statement",
    "processed_default",
]

_encode = msgspec.json.Encoder().encode


class MissingColumnError(ValueError):
    """A row lacks a column its statement carries (or carries one it does not): nothing was
    sent."""


@dataclass(frozen=True)
class _TablePart:
    """How one table's rows become a parameter: the columns each row carries, the times to
    check for a zone, the other processed columns, and the model's defaults, sent once, for
    the columns the rows leave out."""

    table: str
    carried: frozenset[str]
    aware: tuple[str, ...]
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]
    defaults: tuple[Any, ...]

    def document(self, rows: Sequence[Mapping[str, Any]]) -> str:
        """The rows as one JSON array of objects, refused before anything is sent when a row
        does not carry exactly the statement's columns or names a time without its zone."""
        carried, aware, processors = self.carried, self.aware, self.processors
        for n, row in enumerate(rows):
            if row.keys() != carried:
                missing = sorted(carried - row.keys()) or sorted(row.keys() - carried)
                raise MissingColumnError(f"row {n} for {self.table} lacks {missing[0]}")
            for name in aware:
                value = row[name]
                if value is not None and value.tzinfo is None:
                    raise ValueError("naive datetimes are not stored")
        if processors:
            rows = [{**row, **{name: p(row[name]) for name, p in processors}} for row in rows]
        return _encode(rows).decode()


class RowsInsert(ABC):
    """One statement writing many rows of several tables, sent as its own transaction; its
    kinds differ in how the rows travel (``RecordsetInsert``, ``UnnestInsert``)."""

    sql: str

    @abstractmethod
    def parameters(self, *rows: Sequence[Mapping[str, Any]]) -> tuple[Any, ...]:
        """The statement's parameters for ``rows``, one sequence of rows per table."""

    async def execute(
        self, connection: AsyncConnection, *rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Send the statement for ``rows`` (as ``parameters``) on ``connection`` in no
        transaction block: on PostgreSQL a single statement is then its own transaction.

        Sent by asyncpg itself, not through SQLAlchemy's cursor: its session, cursor,
        prepared statement cache and greenlet cost 100-180 µs of client CPU a batch
        (bench/group_commit_cost.py, ``driver`` against ``unnest``; bench/profiles/grant6-29).
        So no ``before_cursor_execute`` event sees it, and its errors come back as
        SQLAlchemy's would: a broken constraint (SQLSTATE class 23) as ``IntegrityError``,
        any other error of the server as ``DBAPIError``, and a broken link (the connection's
        state unknown) as ``OperationalError`` after the connection is invalidated, so the
        pool replaces it.
        """
        parameters, sql = self.parameters(*rows), self.sql
        raw = await connection.get_raw_connection()
        try:
            await raw.driver_connection.execute(sql, *parameters)  # type: ignore[union-attr]
        except Exception as exc:
            sqlstate = getattr(exc, "sqlstate", None)
            if not isinstance(sqlstate, str):
                await connection.invalidate(exc)
                raise OperationalError(sql, None, exc, connection_invalidated=True) from exc
            error = IntegrityError if sqlstate.startswith("23") else DBAPIError
            raise error(sql, None, exc) from exc


class RecordsetInsert(RowsInsert):
    """One statement inserting rows into each of ``tables`` (in order), for rows that all
    carry exactly the columns named beside each table.

    >>> from sqlalchemy import Integer, MetaData, String
    >>> from sqlalchemy.dialects import postgresql
    >>> t = Table("t", MetaData(), Column("id", String(8), primary_key=True),
    ...           Column("n", Integer, default=0))
    >>> insert, rows = RecordsetInsert(postgresql.dialect(), (t, ("id",))).sql.split(" FROM ")
    >>> insert
    'INSERT INTO t (id, n) SELECT r.id, $2::INTEGER'
    >>> rows
    'json_to_recordset($1::JSON) AS r(id VARCHAR(8))'
    """

    def __init__(self, dialect: Dialect, *tables: tuple[Table, Sequence[str]]) -> None:
        quote = dialect.identifier_preparer.quote
        statements: list[str] = []
        self._parts: list[_TablePart] = []
        number = 0
        for table, carried in tables:
            columns = [table.c[name] for name in carried]
            omitted = left_out(table, carried)
            number += 1
            document = number
            selected = [f"r.{quote(c.name)}" for c in columns]
            for column in omitted:
                number += 1
                selected.append(f"${number}::{column.type.compile(dialect=dialect)}")
            names = ", ".join(quote(c.name) for c in columns + omitted)
            fields = ", ".join(
                f"{quote(c.name)} {c.type.compile(dialect=dialect)}" for c in columns
            )
            statements.append(
                f"INSERT INTO {quote(table.name)} ({names}) SELECT {', '.join(selected)} "
                f"FROM json_to_recordset(${document}::JSON) AS r({fields})"
            )
            self._parts.append(
                _TablePart(
                    table=table.name,
                    carried=frozenset(carried),
                    aware=tuple(c.name for c in columns if isinstance(c.type, UTCDateTime)),
                    processors=tuple(
                        (c.name, process)
                        for c in columns
                        if not isinstance(c.type, JSON | UTCDateTime)
                        and (process := c.type.bind_processor(dialect)) is not None
                    ),
                    defaults=tuple(processed_default(c, dialect) for c in omitted),
                )
            )
        self.sql = one_statement(statements)

    def parameters(self, *rows: Sequence[Mapping[str, Any]]) -> tuple[Any, ...]:
        """The statement's parameters for ``rows``, one sequence of rows per table.

        Every row must carry exactly the statement's columns (a caller batches rows of one
        shape: ``HoldCommits`` does); one that does not is refused with
        ``MissingColumnError`` before anything is sent (a missing key would be a silent
        ``NULL`` in ``json_to_recordset``).

        >>> from sqlalchemy import MetaData, String
        >>> from sqlalchemy.dialects import postgresql
        >>> t = Table("t", MetaData(), Column("id", String(8), primary_key=True),
        ...           Column("name", String(8)))
        >>> insert = RecordsetInsert(postgresql.dialect(), (t, ("id", "name")))
        >>> insert.parameters([{"id": "a", "name": "x"}, {"id": "b", "name": "y"}])
        ('[{"id":"a","name":"x"},{"id":"b","name":"y"}]',)
        >>> insert.parameters([{"id": "a", "name": "x"}, {"id": "b"}])
        Traceback (most recent call last):
        ...
        guahao.platform.persistence.recordset_inserts.MissingColumnError: row 1 for t lacks name
        """
        values: list[Any] = []
        for part, table_rows in zip(self._parts, rows, strict=True):
            values.append(part.document(table_rows))
            values.extend(part.defaults)
        return tuple(values)


def one_statement(inserts: Sequence[str]) -> str:
    """``inserts`` as one statement: all but the last as data-modifying ``WITH`` clauses.

    >>> one_statement(["INSERT INTO a SELECT 1", "INSERT INTO b SELECT 2"])
    'WITH w0 AS (INSERT INTO a SELECT 1) INSERT INTO b SELECT 2'
    """
    *first, last = inserts
    ctes = ", ".join(f"w{n} AS ({sql})" for n, sql in enumerate(first))
    return f"WITH {ctes} {last}" if first else last


def left_out(table: Table, carried: Sequence[str]) -> list[Column[Any]]:
    """The columns of ``table`` that rows carrying ``carried`` leave out and the model fills
    in with a scalar default (the server's own defaults are left to the server)."""
    return [c for c in table.columns if c.name not in carried and _scalar_default(c)]


def _scalar_default(column: Column[Any]) -> bool:
    default = column.default
    return default is not None and getattr(default, "is_scalar", False)


def processed_default(column: Column[Any], dialect: Dialect) -> Any:
    """The model's scalar default of ``column`` as its bind processor sends it."""
    value = getattr(column.default, "arg", None)
    process = column.type.bind_processor(dialect)
    return value if process is None else process(value)
