"""Many new rows of one table written in one statement: ``COPY`` on PostgreSQL.

A hospital's first import publishes thousands of sessions and tens of thousands of slots. A
multi-row ``INSERT`` through asyncpg's ``executemany`` is one statement executed once per
row on the server (bind, plan, execute for every slot), and the py-spy profile of a publish
(bench/profiles/surge-grant2-*-publish-*) showed the publishing process idle for most of the
run, waiting on exactly those executions. ``COPY … FROM STDIN`` (binary, through asyncpg)
writes them as one stream in the same transaction, with the same constraints checked.

SQLite (the embedded default) has no ``COPY``; there the rows go through ``executemany`` as
before. The rows are the same column dictionaries either way, and every column the row does
not name gets the value SQLAlchemy would give it (the column's scalar default), so both
paths store the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.persistence.tables import Base

__all__ = ["insert_rows"]

INTEGRITY_SQLSTATE_CLASS = "23"
"""PostgreSQL's class of "integrity constraint violation" errors (unique, foreign key, check,
not null), which asyncpg raises with their ``sqlstate``."""


async def insert_rows(
    session: AsyncSession, model: type[Base], rows: Sequence[dict[str, Any]]
) -> None:
    """Insert ``rows`` (column name → value) into ``model``'s table in the session's
    transaction."""
    if not rows:
        return
    table = model.__table__
    assert isinstance(table, Table)  # every mapped class of the platform maps one table
    unknown = set().union(*(row.keys() for row in rows)) - set(table.columns.keys())
    if unknown:  # an INSERT would drop them silently: a misspelt column is a fault
        raise ValueError(f"{table.name} has no columns {sorted(unknown)}")
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        await session.execute(insert(table), list(rows))
        return
    columns, records = _records(table, rows, connection.dialect)
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None  # an open connection of this session's transaction
    try:
        await driver.copy_records_to_table(
            table.name, records=records, columns=columns, schema_name=table.schema
        )
    except Exception as exc:
        if str(getattr(exc, "sqlstate", "")).startswith(INTEGRITY_SQLSTATE_CLASS):
            # as an INSERT would raise it: callers handle SQLAlchemy's IntegrityError
            raise IntegrityError(f"COPY {table.name}", None, exc) from exc
        raise


def _records(
    table: Table, rows: Sequence[dict[str, Any]], dialect: Dialect
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The columns to copy and each row's values in their order, as the driver gets them from
    an ``INSERT`` (each column type's bind processing, e.g. datetimes checked aware): the
    columns the rows name and those they leave out that have a scalar default. A column
    without one is left out, as an ``INSERT`` leaves it (the server's default or NULL)."""
    named = set().union(*(row.keys() for row in rows))
    columns: list[str] = []
    defaults: dict[str, Any] = {}
    for column in table.columns:
        if column.name in named:
            columns.append(column.name)
        elif column.default is not None:
            if not column.default.is_scalar:
                raise ValueError(f"{table.name}.{column.name}: only scalar defaults are copied")
            columns.append(column.name)
            defaults[column.name] = column.default.arg  # type: ignore[attr-defined]
    processors = [table.columns[name].type.bind_processor(dialect) for name in columns]
    records = [
        tuple(
            value if processor is None else processor(value)
            for processor, value in zip(
                processors,
                (row[name] if name in row else defaults.get(name) for name in columns),
                strict=True,
            )
        )
        for row in rows
    ]
    return columns, records
