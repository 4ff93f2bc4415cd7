"""access measures in trend order: one index per specialty, hospital and day

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 21:10:00.000000

The access view reads one specialty's days hospital by hospital. The rows of one specialty are
spread over the whole table (it grows day by day), so the day index made the view read a
heap page for nearly every row and sort them. This index returns them in the view's order,
and on PostgreSQL carries the columns the view reads (``INCLUDE``), so the read is an
index-only scan. An index only: the code before this revision runs unchanged beside it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_access_measures_trend",
        "access_measures",
        ["catalog_code", "hospital_id", "measured_on"],
        postgresql_include=["district", "third_next_days", "free_units"],
    )


def downgrade() -> None:
    op.drop_index("ix_access_measures_trend", table_name="access_measures")
