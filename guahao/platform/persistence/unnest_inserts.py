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

``HoldCommits`` sends ``RecordsetInsert`` (recordset_inserts.py) since branch commit3: each
table's rows one JSON document, a third of this statement's client CPU a row. This one stays
as the way it is measured against (bench/group_commit_cost.py, bench/pg_row_cost.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Table
from sqlalchemy.engine import Dialect

from guahao.platform.persistence.recordset_inserts import (
    MissingColumnError,
    RowsInsert,
    left_out,
    one_statement,
    processed_default,
)

__all__ = ["UnnestInsert"]


@dataclass(frozen=True)
class _TablePart:
    """How one table's rows become parameters: a column's array per carried column, and
    the model's defaults, sent once, for the columns the rows leave out."""

    table: str
    carried: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    defaults: tuple[Any, ...]


class UnnestInsert(RowsInsert):
    """One statement inserting rows into each of ``tables`` (in order), for rows that all
    carry the columns named beside each table.

    >>> from sqlalchemy import Column, Integer, MetaData, String
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
            omitted = left_out(table, carried)
            arrays, selected = [], []
            for column in columns:
                number += 1
                json = isinstance(column.type, JSON)
                element = "TEXT" if json else column.type.compile(dialect=dialect)
                arrays.append(f"${number}::{element}[]")
                selected.append(f"r.{quote(column.name)}" + ("::JSON" if json else ""))
            for column in omitted:
                number += 1
                selected.append(f"${number}::{column.type.compile(dialect=dialect)}")
            names = ", ".join(quote(c.name) for c in columns + omitted)
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
                    defaults=tuple(processed_default(c, dialect) for c in omitted),
                )
            )
        self.sql = one_statement(statements)

    def parameters(self, *rows: Sequence[Mapping[str, Any]]) -> tuple[Any, ...]:
        """The statement's parameters for ``rows``, one sequence of rows per table.

        Every row must carry the statement's columns (a caller batches rows of one shape:
        ``HoldCommits`` does); one that lacks one is refused with ``MissingColumnError``
        before anything is sent, rather than a bare ``KeyError``.

        >>> from sqlalchemy import Column, MetaData, String
        >>> from sqlalchemy.dialects import postgresql
        >>> t = Table("t", MetaData(), Column("id", String(8), primary_key=True),
        ...           Column("name", String(8)))
        >>> insert = UnnestInsert(postgresql.dialect(), (t, ("id", "name")))
        >>> insert.parameters([{"id": "a", "name": "x"}, {"id": "b", "name": "y"}])
        (['a', 'b'], ['x', 'y'])
        >>> insert.parameters([{"id": "a", "name": "x"}, {"id": "b"}])
        Traceback (most recent call last):
        ...
        guahao.platform.persistence.recordset_inserts.MissingColumnError: row 1 for t lacks name
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


def _missing(part: _TablePart, rows: Sequence[Mapping[str, Any]], name: str) -> MissingColumnError:
    first = next(n for n, row in enumerate(rows) if name not in row)
    return MissingColumnError(f"row {first} for {part.table} lacks {name}")
