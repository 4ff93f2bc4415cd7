"""bookings: one foreign key to the slot and its session on PostgreSQL

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 06:10:00.000000

Every granted hold's row was checked against two parents, its slot and its session: two
reference checks (a probe of the parent's key and a ``FOR KEY SHARE`` lock of its row) a
hold. On PostgreSQL they are now one: ``(slot_id, session_id)`` references the slot's own
``(id, session_id)`` (a unique index of ``slots``), so the session exists by the slot's own
foreign key, and a booking's session can no longer differ from its slot's: 3.2 µs of
PostgreSQL's CPU a row fewer (bench/pg_row_cost.py, bench/README.md "branch pgrow2").

SQLite keeps its two foreign keys: changing them would copy ``bookings`` (Alembic's batch
mode), and with foreign keys on the copy's ``DROP TABLE`` fails as soon as a payment order,
refund or any other row references a booking.

Every booking the code writes already carries its slot's session, so the code before this
revision runs unchanged beside it. Adding the foreign key checks every existing booking
(a booking whose session is not its slot's stops the migration, with the offending row named).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index("uq_slots_id_session_id", "slots", ["id", "session_id"], unique=True)
    op.drop_constraint("fk_bookings_slot_id_slots", "bookings", type_="foreignkey")
    op.drop_constraint("fk_bookings_session_id_sessions", "bookings", type_="foreignkey")
    op.create_foreign_key(
        "fk_bookings_slot_id_session_id_slots",
        "bookings",
        "slots",
        ["slot_id", "session_id"],
        ["id", "session_id"],
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_constraint("fk_bookings_slot_id_session_id_slots", "bookings", type_="foreignkey")
    op.create_foreign_key(
        "fk_bookings_session_id_sessions", "bookings", "sessions", ["session_id"], ["id"]
    )
    op.create_foreign_key("fk_bookings_slot_id_slots", "bookings", "slots", ["slot_id"], ["id"])
    op.drop_index("uq_slots_id_session_id", table_name="slots")
