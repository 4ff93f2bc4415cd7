"""bookings and outbox: three index entries fewer for every hold

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 22:00:00.000000

A release writes a booking row and a ``booking.held`` event for every granted hold, and each
index of ``bookings`` and ``outbox`` is one more btree insert (and its WAL) in PostgreSQL's
share of the machine (bench/pg_row_cost.py, bench/README.md "branch pgrow"). Three of them
bought no read of those rows:

- ``ix_bookings_account_id`` repeats the leading column of the unique
  ``(account_id, idempotency_key)`` index, which serves every read by account as well;
- ``ix_bookings_person_visit`` held every hold under a NULL person (the person is copied in
  when the patient is chosen), and every read by person names one (``person_id = ...``,
  which implies ``person_id IS NOT NULL``): it is now partial, without the holds;
- ``ix_outbox_aggregate_id`` held every event, a hold's ``booking.held`` among them, and only
  the cut-off events (``session.cutoff``) are ever read by their aggregate: it is now partial,
  with those alone (the one read states the same condition).

Indexes only: the code before this revision runs unchanged beside it (its reads by account
use the unique index, its reads by person the partial one; its read of cut-off events binds
the topic as a parameter, which a generic plan of PostgreSQL cannot match to the partial
index: at worst the rollups' rebuild reads the outbox whole until this revision's code
runs), so it can be applied while that code still runs. On PostgreSQL both
indexes are dropped and built again inside the migration's transaction, so no other
transaction sees the tables without them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WITH_PERSON = sa.text("person_id IS NOT NULL")
CUTOFF_EVENTS = sa.text("topic = 'session.cutoff'")


def upgrade() -> None:
    op.drop_index("ix_bookings_person_visit", table_name="bookings")
    op.create_index(
        "ix_bookings_person_visit",
        "bookings",
        ["person_id", "visit_date"],
        sqlite_where=WITH_PERSON,
        postgresql_where=WITH_PERSON,
    )
    op.drop_index("ix_bookings_account_id", table_name="bookings")
    op.drop_index("ix_outbox_aggregate_id", table_name="outbox")
    op.create_index(
        "ix_outbox_aggregate_id",
        "outbox",
        ["aggregate_id"],
        sqlite_where=CUTOFF_EVENTS,
        postgresql_where=CUTOFF_EVENTS,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_aggregate_id", table_name="outbox")
    op.create_index("ix_outbox_aggregate_id", "outbox", ["aggregate_id"])
    op.create_index("ix_bookings_account_id", "bookings", ["account_id"])
    op.drop_index("ix_bookings_person_visit", table_name="bookings")
    op.create_index("ix_bookings_person_visit", "bookings", ["person_id", "visit_date"])
