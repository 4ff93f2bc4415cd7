"""The audit log's hash chain: each entry holds the SHA-256 of the entry before it and its own,
over a canonical encoding, so editing, deleting or inserting a row directly in the database
breaks a link that ``guahao audit verify`` finds.

Appends are serialised by one row, ``audit_chain_head`` (the last sequence number and hash).
Every insert of an audit row first *updates* that row and only then reads it: the update takes
PostgreSQL's row lock (held to commit, so a concurrent writer waits and then reads the new
head under READ COMMITTED) and SQLite's database write lock (SQLite has one writer at a time,
and the update comes before the read, so no stale snapshot is ever extended). One chain rather
than a chain per partition: audit rows are written by staff actions and automatic bans, a few
per second at most, and the lock is held only for the rest of a transaction that already
writes. The chain is computed inside the writer's own transaction, so a rolled-back action
leaves neither its row nor a gap.

The chain proves that rows were not changed *without also rewriting every later hash and the
head*; an operator who keeps the head printed by ``guahao audit verify`` elsewhere (a ticket, a
log shipped off the machine) can prove that too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper

from guahao.platform.persistence.tables import AuditChainHeadRow, AuditRow

__all__ = [
    "GENESIS_HASH",
    "ChainBreak",
    "ChainReport",
    "entry_hash",
    "verify_chain",
]

GENESIS_HASH = "0" * 64
"""The "previous hash" of the first entry."""

_BATCH = 1000


def entry_hash(
    *,
    seq: int,
    prev_hash: str,
    actor: str,
    actor_role: str,
    action: str,
    subject_type: str,
    subject_id: str,
    detail: Any,
    at: datetime,
) -> str:
    """SHA-256 (hex) of one entry's canonical encoding: a JSON array with keys sorted, no
    spaces, UTF-8, and ``at`` as an ISO 8601 UTC string with microseconds, so both databases
    and any later reader produce the same bytes.

    >>> from datetime import UTC, datetime
    >>> entry_hash(seq=1, prev_hash=GENESIS_HASH, actor="a", actor_role="authority_admin",
    ...     action="ban", subject_type="person", subject_id="p1", detail={"b": 1, "a": [2]},
    ...     at=datetime(2026, 1, 1, tzinfo=UTC))[:16]
    '384d3e06cd37ce1e'
    """
    encoded = json.dumps(
        [
            1,  # the encoding's version
            seq,
            prev_hash,
            actor,
            actor_role,
            action,
            subject_type,
            subject_id,
            detail,
            at.astimezone(UTC).isoformat(timespec="microseconds"),
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    return hashlib.sha256(encoded).hexdigest()


def _row_hash(row: AuditRow, seq: int, prev_hash: str) -> str:
    return entry_hash(
        seq=seq,
        prev_hash=prev_hash,
        actor=row.actor,
        actor_role=row.actor_role,
        action=row.action,
        subject_type=row.subject_type,
        subject_id=row.subject_id,
        detail=row.detail,
        at=row.at,
    )


@event.listens_for(AuditRow, "before_insert")
def _chain_new_row(_mapper: Mapper[AuditRow], connection: Connection, row: AuditRow) -> None:
    """Link ``row`` to the head under the head's lock (see the module docstring)."""
    head = AuditChainHeadRow
    connection.execute(update(head).where(head.id == 1).values(seq=head.seq + 1))
    seq, prev_hash = connection.execute(select(head.seq, head.last_hash).where(head.id == 1)).one()
    row.detail = msgspec.to_builtins(row.detail)
    row.chain_seq = seq
    row.prev_hash = prev_hash
    row.entry_hash = _row_hash(row, seq, prev_hash)
    connection.execute(update(head).where(head.id == 1).values(last_hash=row.entry_hash))


class ChainBreak(msgspec.Struct, frozen=True):
    """The first link that does not hold, and why."""

    seq: int
    audit_id: int | None
    reason: str


class ChainReport(msgspec.Struct, frozen=True):
    entries: int
    head_seq: int
    head_hash: str
    first_break: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


async def _rows(session: AsyncSession) -> AsyncIterator[AuditRow]:
    after = -1
    while True:
        batch = (
            await session.scalars(
                select(AuditRow)
                .where(AuditRow.chain_seq > after)
                .order_by(AuditRow.chain_seq)
                .limit(_BATCH)
            )
        ).all()
        for row in batch:
            yield row
        if len(batch) < _BATCH:
            return
        after = batch[-1].chain_seq
        session.expunge_all()


async def verify_chain(session: AsyncSession) -> ChainReport:
    """Walk the chain in order and report the first broken link: a recomputed hash that
    differs (a row edited), a sequence gap or a previous hash that differs (a row deleted or
    inserted), or a head that the last row does not match (the newest rows deleted)."""
    head = await session.get(AuditChainHeadRow, 1)
    head_seq, head_hash = (head.seq, head.last_hash) if head else (0, GENESIS_HASH)
    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    first_break: ChainBreak | None = None
    async for row in _rows(session):
        count += 1
        if first_break is not None:
            continue
        if row.chain_seq != expected_seq:
            first_break = ChainBreak(
                expected_seq, row.id, f"entry {expected_seq} is missing (next is {row.chain_seq})"
            )
        elif row.prev_hash != prev_hash:
            first_break = ChainBreak(
                row.chain_seq, row.id, "previous hash differs from the entry before it"
            )
        elif _row_hash(row, row.chain_seq, row.prev_hash) != row.entry_hash:
            first_break = ChainBreak(row.chain_seq, row.id, "content differs from its hash")
        else:
            expected_seq, prev_hash = row.chain_seq + 1, row.entry_hash
    if first_break is None and (expected_seq - 1, prev_hash) != (head_seq, head_hash):
        first_break = ChainBreak(
            expected_seq,
            None,
            f"the head records entry {head_seq} but the chain ends at entry {expected_seq - 1}",
        )
    return ChainReport(
        entries=count, head_seq=head_seq, head_hash=head_hash, first_break=first_break
    )
