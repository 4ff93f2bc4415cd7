"""bookings: two index entries fewer for every hold

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 22:00:00.000000

A release writes a booking row for every granted hold, and each index of ``bookings`` is one
more btree insert (and its WAL) in PostgreSQL's share of the machine (bench/pg_row_cost.py,
bench/README.md "branch pgrow"). Two of them bought no read:

- ``ix_bookings_account_id`` repeats the leading column of the unique
  ``(account_id, idempotency_key)`` index, which serves every read by account as well;
- ``ix_bookings_person_visit`` held every hold under a NULL person (the person is copied in
  when the patient is chosen), and every read by person names one (``person_id = ...``,
  which implies ``person_id IS NOT NULL``): it is now partial, without the holds.

Indexes only: the code before this revision runs unchanged beside it (its reads by account
use the unique index, its reads by person the partial one), so it can be applied while that
code still runs. On PostgreSQL the person's index is dropped and built again inside the
migration's transaction, so no other transaction sees bookings without it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WITH_PERSON = sa.text("person_id IS NOT NULL")


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


def downgrade() -> None:
    op.create_index("ix_bookings_account_id", "bookings", ["account_id"])
    op.drop_index("ix_bookings_person_visit", table_name="bookings")
    op.create_index("ix_bookings_person_visit", "bookings", ["person_id", "visit_date"])
