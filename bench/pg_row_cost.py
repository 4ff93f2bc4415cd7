"""What a granted hold's rows cost PostgreSQL itself, one part at a time (issue 15, branch pgrow).

Not a test. ``HoldCommits`` writes a batch of granted holds as one ``INSERT ... SELECT FROM
unnest(...)`` statement (a ``bookings`` row and a ``booking.held`` ``outbox`` row each). This
writes the same statement, on one kept connection as ``HoldCommits`` does, into copies of the
two tables built from the migrated schema (``--schema``'s revision): each copy carries the
real tables' indexes (from ``pg_indexes``) and foreign keys (from ``pg_constraint``), the
parents of the foreign keys being one-column copies of the referenced tables (``id`` alone:
a foreign-key check is a probe of the parent's primary key and a ``FOR KEY SHARE`` lock of
its row, neither of which depends on the parent's other columns). Then a variant removes or
changes one thing: a foreign key, an index, the outbox part, ``synchronous_commit`` (the
throwaway cluster runs with ``fsync`` off: the commit's own flush is not in these figures), or
the way the rows travel (``recordset``: each table's rows one JSON document, as
``HoldCommits`` sends them since branch commit3).

Per variant, in rounds that take the variants in turn: the backend's CPU (``/proc/PID/schedstat``
of the connection's backend, nanoseconds on a core) and the WAL it wrote
(``pg_current_wal_insert_lsn``), each per row, medians over the rounds. The rows are shaped
as ``HoldGrants`` records them: each by another account, on a few hot slots of one session,
the nullable foreign keys NULL as at hold time, distinct address and device hashes. Finally
``EXPLAIN (ANALYZE, BUFFERS, WAL)`` of one batch on the full copy: its trigger lines are each
foreign key's checks.

    .venv/bin/python bench/pg_row_cost.py --rows 16 --batches 300 --rounds 7
    .venv/bin/python bench/pg_row_cost.py --schema 0013 --only 0014 --rounds 15
    .venv/bin/python bench/pg_row_cost.py --schema 0014 --only "one foreign key" --rounds 11
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import uvloop
from sqlalchemy import MetaData
from sqlalchemy.dialects import postgresql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guahao.platform.persistence.database import upgrade_async
from guahao.platform.persistence.outbox import event_values
from guahao.platform.persistence.recordset_inserts import RecordsetInsert
from guahao.platform.persistence.unnest_inserts import UnnestInsert
from guahao.platform.services.hold_commits import BOOKINGS, OUTBOX
from infra import local_postgres

ACCOUNTS = 100_000
HOT_SLOTS = 4
HELD_WITH = ("account_id", "slot_id", "session_id")
"""The foreign keys a hold's row carries; the others are NULL until the patient is chosen."""


@dataclass
class Variant:
    """The copy as the schema has it, less (or with) one thing."""

    name: str
    drop_fks: frozenset[str] = frozenset()
    """Foreign-key columns of ``bookings`` left without their constraint."""
    drop_indexes: frozenset[str] = frozenset()
    """Indexes (by their real name) left out."""
    where: dict[str, str] = field(default_factory=dict)
    """Indexes (by their real name) made partial with this predicate."""
    slot_and_session: bool = False
    """The slot and session foreign keys as one: ``(slot_id, session_id)`` referencing the
    slot's ``(id, session_id)`` (the session's existence then follows from the slot's own
    foreign key)."""
    outbox: bool = True
    synchronous_commit: str | None = None
    recordset: bool = False
    """Each table's rows sent as one JSON document (``RecordsetInsert``) instead of a
    column's array each (``UnnestInsert``)."""


def _variants(booking_fks: list[str], indexes: list[str]) -> list[Variant]:
    out = [Variant("schema as migrated")]
    out += [Variant(f"- FK {c}", drop_fks=frozenset({c})) for c in HELD_WITH]
    out.append(Variant("- every FK", drop_fks=frozenset(booking_fks)))
    out += [
        Variant(f"- index {i}", drop_indexes=frozenset({i}))
        for i in indexes
        if not i.startswith(("pk_", "uq_bookings_account_id"))
    ]
    out.append(Variant("- outbox row", outbox=False))
    out.append(Variant("synchronous_commit on", synchronous_commit="on"))
    nullable = frozenset(c for c in booking_fks if c not in HELD_WITH)
    out.append(Variant("- the FKs NULL at hold time", drop_fks=nullable))
    out.append(
        Variant(
            "0014: - ix_bookings_account_id, ix_bookings_person_visit partial",
            drop_indexes=frozenset({"ix_bookings_account_id"}),
            where={"ix_bookings_person_visit": "person_id IS NOT NULL"},
        )
    )
    out.append(
        Variant(
            "0014 and one foreign key (slot_id, session_id) for the two",
            drop_indexes=frozenset({"ix_bookings_account_id"}),
            where={"ix_bookings_person_visit": "person_id IS NOT NULL"},
            slot_and_session=True,
        )
    )
    out.append(
        Variant(
            "0014 and ix_outbox_aggregate_id partial (topic = 'session.cutoff')",
            drop_indexes=frozenset({"ix_bookings_account_id"}),
            where={
                "ix_bookings_person_visit": "person_id IS NOT NULL",
                "ix_outbox_aggregate_id": "topic = 'session.cutoff'",
            },
        )
    )
    out.append(Variant("recordset: each table's rows one JSON document", recordset=True))
    out.append(Variant("one foreign key (slot_id, session_id) for the two", slot_and_session=True))
    return out


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _schedstat_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


class Copies:
    """The copies of ``bookings`` and ``outbox`` of each variant, and their parents."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.index_defs: dict[str, dict[str, str]] = {}
        self.fks: dict[str, tuple[str, str]] = {}
        """bookings' foreign-key column → (referenced table, constraint definition)."""
        self.slot_and_session = False
        """Whether the schema has migration 0015's one foreign key ``(slot_id, session_id)``
        (then every copy has it: compare it with the two by ``--schema 0014``)."""

    async def read_schema(self) -> None:
        for table in ("bookings", "outbox"):
            rows = await self.connection.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1", table
            )
            self.index_defs[table] = {r["indexname"]: r["indexdef"] for r in rows}
        for r in await self.connection.fetch(
            "SELECT a.attname AS column, c.confrelid::regclass::text AS parent, "
            "cardinality(c.conkey) AS columns FROM pg_constraint c JOIN pg_attribute a "
            "ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
            "WHERE c.conrelid = 'bookings'::regclass AND c.contype = 'f'"
        ):
            if r["columns"] > 1:
                self.slot_and_session = True
                continue
            self.fks[r["column"]] = (r["parent"], "")

    async def make_parents(self) -> None:
        for parent in sorted({p for p, _ in self.fks.values()} - {"slots"}):
            await self.connection.execute(f"CREATE TABLE bp_{parent} (id VARCHAR(32) PRIMARY KEY)")
        await self.connection.execute(
            "CREATE TABLE bp_slots (id VARCHAR(32) PRIMARY KEY, session_id VARCHAR(32), "
            "UNIQUE (id, session_id))"
        )
        await self.connection.execute(
            "INSERT INTO bp_accounts SELECT md5(g::text) FROM generate_series(1, $1) g",
            ACCOUNTS,
        )
        await self.connection.execute(
            "INSERT INTO bp_slots SELECT 'slot' || g, 'session1' FROM generate_series(1, $1) g",
            HOT_SLOTS,
        )
        await self.connection.execute("INSERT INTO bp_sessions VALUES ('session1')")
        await self.connection.execute("VACUUM ANALYZE")

    async def make(self, variant: Variant, suffix: str) -> None:
        for table in ("bookings", "outbox"):
            await self.connection.execute(
                f"CREATE TABLE {table}_{suffix} "
                f"(LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            )
            for name, definition in self.index_defs[table].items():
                if name in variant.drop_indexes:
                    continue
                sql = definition.replace(f" INDEX {name} ", f" INDEX {name}_{suffix} ").replace(
                    f" ON public.{table} ", f" ON public.{table}_{suffix} "
                )
                if name in variant.where:
                    sql += f" WHERE {variant.where[name]}"
                await self.connection.execute(sql)
        one_key = variant.slot_and_session or self.slot_and_session
        together = {"slot_id", "session_id"} if one_key else set()
        if together:
            await self.connection.execute(
                f"ALTER TABLE bookings_{suffix} ADD CONSTRAINT fk_{suffix}_slot_session "
                "FOREIGN KEY (slot_id, session_id) REFERENCES bp_slots (id, session_id)"
            )
        for column, (parent, _) in self.fks.items():
            if column in variant.drop_fks or column in together:
                continue
            await self.connection.execute(
                f"ALTER TABLE bookings_{suffix} ADD CONSTRAINT fk_{suffix}_{column} "
                f"FOREIGN KEY ({column}) REFERENCES bp_{parent} (id)"
            )


def _rows(count: int, accounts: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    now = datetime.now(UTC)
    bookings, events = [], []
    for n in range(count):
        booking_id = uuid.uuid4().hex
        bookings.append(
            {
                "id": booking_id,
                "account_id": random.choice(accounts),
                "slot_id": f"slot{n % HOT_SLOTS + 1}",
                "session_id": "session1",
                "status": "held",
                "idempotency_key": uuid.uuid4().hex,
                "fee_cents": 500,
                "hold_expires_at": now + timedelta(minutes=10),
                "created_at": now,
                "updated_at": now,
                "ip_hash": secrets.token_hex(32),
                "device_hash": secrets.token_hex(32),
            }
        )
        payload = {  # event_payload's keys
            "booking_id": booking_id,
            "account_id": bookings[-1]["account_id"],
            "slot_id": bookings[-1]["slot_id"],
            "session_id": "session1",
            "patient_id": None,
            "status": "held",
            "end_reason": None,
        }
        events.append(event_values("booking.held", booking_id, payload, now))
    return bookings, events


class Writer:
    """One variant's statement on one kept connection, as ``HoldCommits`` sends it."""

    def __init__(self, variant: Variant, suffix: str, sample: tuple[list[Any], list[Any]]):
        dialect = postgresql.asyncpg.dialect()  # type: ignore[no-untyped-call]
        copies = MetaData()
        bookings = BOOKINGS.to_metadata(copies, name=f"bookings_{suffix}")
        outbox = OUTBOX.to_metadata(copies, name=f"outbox_{suffix}")
        parts = [(bookings, tuple(sample[0][0]))]
        if variant.outbox:
            parts.append((outbox, tuple(sample[1][0])))
        way = RecordsetInsert if variant.recordset else UnnestInsert
        self.statement: RecordsetInsert | UnnestInsert = way(dialect, *parts)
        self.variant = variant

    def parameters(self, rows: tuple[list[Any], list[Any]]) -> tuple[Any, ...]:
        return self.statement.parameters(*(rows if self.variant.outbox else rows[:1]))


async def _measure(url: str, options: argparse.Namespace) -> None:
    await upgrade_async(url, options.schema)
    dsn = url.replace("+asyncpg", "", 1)
    admin = await asyncpg.connect(dsn)
    copies = Copies(admin)
    await copies.read_schema()
    await copies.make_parents()
    account_ids = [r[0] for r in await admin.fetch("SELECT id FROM bp_accounts")]
    every = _variants(
        sorted(copies.fks),
        sorted(copies.index_defs["bookings"]) + sorted(copies.index_defs["outbox"]),
    )
    variants = [every[0], *(v for v in every[1:] if v.name.startswith(tuple(options.only)))]
    sample = _rows(1, [uuid.uuid4().hex])
    cpu: dict[str, list[float]] = {v.name: [] for v in variants}
    wal: dict[str, list[float]] = {v.name: [] for v in variants}
    plan: list[str] = []
    print(f"load average before: {_load()}")
    for round_number in range(options.rounds):
        shift = round_number % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            suffix = f"r{round_number}"
            await copies.make(variant, suffix)
            writer = Writer(variant, suffix, sample)
            connection = await asyncpg.connect(dsn)
            if variant.synchronous_commit:
                await connection.execute(f"SET synchronous_commit = {variant.synchronous_commit}")
            for _ in range(options.prefill // 500):
                await connection.execute(
                    writer.statement.sql, *writer.parameters(_rows(500, account_ids))
                )
            await admin.execute(f"VACUUM ANALYZE bookings_{suffix}, outbox_{suffix}")
            batches = [_rows(options.rows, account_ids) for _ in range(options.batches + 10)]
            parameters = [writer.parameters(b) for b in batches]
            for p in parameters[:10]:  # the statement prepared, the RI checks' plans cached
                await connection.execute(writer.statement.sql, *p)
            pid = connection.get_server_pid()
            lsn = await admin.fetchval("SELECT pg_current_wal_insert_lsn()")
            ns = _schedstat_ns(pid)
            for p in parameters[10:]:
                await connection.execute(writer.statement.sql, *p)
            ns = _schedstat_ns(pid) - ns
            wal_bytes = await admin.fetchval(
                "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1)", lsn
            )
            rows = options.batches * options.rows
            cpu[variant.name].append(ns / 1000 / rows)
            wal[variant.name].append(float(wal_bytes) / rows)
            if variant is variants[0] and not plan:
                plan = [
                    r[0]
                    for r in await connection.fetch(
                        f"EXPLAIN (ANALYZE, BUFFERS, WAL) {writer.statement.sql}",
                        *writer.parameters(_rows(options.rows, account_ids)),
                    )
                ]
            await connection.close()
            await admin.execute(f"DROP TABLE bookings_{suffix}, outbox_{suffix}")
        print(f"round {round_number + 1} done, load {_load()}", flush=True)
    base = variants[0].name
    print(
        f"\n{options.rows} rows a batch, {options.batches} batches a round on {options.prefill:,} "
        f"rows, {options.rounds} rounds; medians per row; saved: the median over the rounds of "
        "the round's schema as migrated less the variant\n"
    )
    print(
        "| variant | backend CPU µs a row | saved µs | WAL bytes a row | saved bytes | rounds µs |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for variant in variants:
        name = variant.name
        saved = statistics.median(b - v for b, v in zip(cpu[base], cpu[name], strict=True))
        saved_wal = statistics.median(b - v for b, v in zip(wal[base], wal[name], strict=True))
        print(
            f"| {name} | {statistics.median(cpu[name]):.1f} | {saved:+.1f} "
            f"| {statistics.median(wal[name]):.0f} | {saved_wal:+.0f} "
            f"| {' '.join(f'{x:.1f}' for x in cpu[name])} |"
        )
    print(f"load average after: {_load()}")
    print(f"\nEXPLAIN (ANALYZE, BUFFERS, WAL) of one batch of {options.rows} rows:")
    print("\n".join(plan))
    await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=16, help="rows a batch")
    parser.add_argument("--batches", type=int, default=150, help="batches a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prefill", type=int, default=20_000, help="rows before measuring")
    parser.add_argument(
        "--only",
        nargs="*",
        default=[""],
        help="the variants (by how their name starts) "
        "measured beside the schema as migrated; all by default",
    )
    parser.add_argument("--schema", default="head", help="the revision the copies are made of")
    options = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="guahao-pg-row-cost-"))
    directory.chmod(0o755)  # the cluster runs as the postgres user when we are root
    url = local_postgres.start(directory)
    try:
        uvloop.run(_measure(url, options))
    finally:
        local_postgres.stop(directory)
        shutil.rmtree(directory, ignore_errors=True)  # a run leaves 1-3 GB of WAL and tables


if __name__ == "__main__":
    main()
