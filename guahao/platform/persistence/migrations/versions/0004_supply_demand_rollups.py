"""the authority's read models: supply and demand per department and day, refused demand per
session, the third-next-available access measure

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTS = (
    "sessions",
    "released",
    "online_released",
    "offline_released",
    "booked",
    "cancelled",
    "no_shows",
    "checked_in",
    "add_on_units",
    "add_on_untraced",
    "refused",
    "waitlist_joined",
    "waitlist_served",
    "waitlist_unserved",
    "waitlist_waiting",
    "max_segment_minutes",
    "midnight_releases",
)

_AREA_COUNTS = (
    "hospitals",
    "departments",
    "released",
    "online_released",
    "offline_released",
    "booked",
    "cancelled",
    "no_shows",
    "checked_in",
    "refused",
    "waitlist_joined",
    "waitlist_unserved",
    "waitlist_waiting",
)

_HOSPITAL_COUNTS = (
    "released",
    "online_released",
    "offline_released",
    "booked",
    "cancelled",
    "no_shows",
    "add_on_untraced",
    "midnight_releases",
    "max_segment_minutes",
    "min_onsite_permille",
)


def upgrade() -> None:
    op.create_table(
        "supply_demand_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("department_id", sa.String(length=32), nullable=False),
        sa.Column("hospital_id", sa.String(length=32), nullable=False),
        sa.Column("district", sa.String(length=100), nullable=False),
        sa.Column("catalog_code", sa.String(length=8), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _COUNTS),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", "department_id", name=op.f("pk_supply_demand_days")),
    )
    op.create_index(
        "ix_supply_demand_days_day_district",
        "supply_demand_days",
        ["day", "district", "catalog_code"],
    )
    op.create_index(
        "ix_supply_demand_days_hospital_day", "supply_demand_days", ["hospital_id", "day"]
    )
    op.create_table(
        "supply_demand_areas",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("district", sa.String(length=100), nullable=False),
        sa.Column("catalog_code", sa.String(length=8), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _AREA_COUNTS),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "district", "catalog_code", name=op.f("pk_supply_demand_areas")
        ),
    )
    op.create_index(
        "ix_supply_demand_areas_catalog_day", "supply_demand_areas", ["catalog_code", "day"]
    )
    op.create_table(
        "supply_demand_hospital_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("hospital_id", sa.String(length=32), nullable=False),
        sa.Column("district", sa.String(length=100), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _HOSPITAL_COUNTS),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", "hospital_id", name=op.f("pk_supply_demand_hospital_days")),
    )
    op.create_index(
        "ix_supply_demand_hospital_days_hospital",
        "supply_demand_hospital_days",
        ["hospital_id", "day"],
    )
    op.create_table(
        "refused_demand",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_refused_demand")),
    )
    op.create_table(
        "access_measures",
        sa.Column("measured_on", sa.Date(), nullable=False),
        sa.Column("hospital_id", sa.String(length=32), nullable=False),
        sa.Column("catalog_code", sa.String(length=8), nullable=False),
        sa.Column("district", sa.String(length=100), nullable=False),
        sa.Column("third_next_days", sa.Integer(), nullable=True),
        sa.Column("free_units", sa.Integer(), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "measured_on", "hospital_id", "catalog_code", name=op.f("pk_access_measures")
        ),
    )
    op.create_index(
        "ix_access_measures_catalog_day", "access_measures", ["catalog_code", "measured_on"]
    )


def downgrade() -> None:
    op.drop_index("ix_access_measures_catalog_day", table_name="access_measures")
    op.drop_table("access_measures")
    op.drop_table("refused_demand")
    op.drop_index(
        "ix_supply_demand_hospital_days_hospital", table_name="supply_demand_hospital_days"
    )
    op.drop_table("supply_demand_hospital_days")
    op.drop_index("ix_supply_demand_areas_catalog_day", table_name="supply_demand_areas")
    op.drop_table("supply_demand_areas")
    op.drop_index("ix_supply_demand_days_hospital_day", table_name="supply_demand_days")
    op.drop_index("ix_supply_demand_days_day_district", table_name="supply_demand_days")
    op.drop_table("supply_demand_days")
