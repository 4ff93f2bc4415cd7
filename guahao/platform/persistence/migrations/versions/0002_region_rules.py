"""region rules: real-name identity, limits, blacklist, waitlist, lottery, add-on units

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 11:30:00.000000

Patients already recorded each become (or join) the person their document names, so the
region's per-person rules apply to them from the first moment.
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _persons_for_existing_patients() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT document_hash, MIN(document_type), MIN(created_at) FROM patients"
            " GROUP BY document_hash"
        )
    ).all()
    for document_hash, document_type, created_at in rows:
        person_id = uuid.uuid4().hex
        # Plain SQL: the timestamp goes back exactly as each backend gave it.
        bind.execute(
            sa.text(
                "INSERT INTO persons (id, document_hash, document_type, sex,"
                " verification_level, verified_by, created_at, lock_version)"
                " VALUES (:id, :h, :t, '', 'format_checked', 'migration', :c, 0)"
            ),
            {"id": person_id, "h": document_hash, "t": document_type, "c": created_at},
        )
        bind.execute(
            sa.text("UPDATE patients SET person_id = :p WHERE document_hash = :h"),
            {"p": person_id, "h": document_hash},
        )


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("actor_role", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index("ix_audit_subject", ["subject_type", "subject_id"], unique=False)

    op.create_table(
        "persons",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("document_hash", sa.String(length=64), nullable=False),
        sa.Column("document_type", sa.String(length=32), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("sex", sa.String(length=8), nullable=False),
        sa.Column("verification_level", sa.String(length=32), nullable=False),
        sa.Column("verified_by", sa.String(length=64), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lock_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_persons")),
        sa.UniqueConstraint("document_hash", name=op.f("uq_persons_document_hash")),
    )
    op.create_table(
        "region_rules",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("changed_by", sa.String(length=64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_region_rules")),
    )
    op.create_table(
        "suspicion_signals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=48), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by", sa.String(length=64), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suspicion_signals")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_suspicion_signals_dedupe_key")),
    )
    with op.batch_alter_table("suspicion_signals", schema=None) as batch_op:
        batch_op.create_index("ix_signals_kind_time", ["kind", "detected_at"], unique=False)

    op.create_table(
        "blacklist_entries",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("person_id", sa.String(length=32), nullable=False),
        sa.Column("policy", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=64), nullable=True),
        sa.Column("lift_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "source IN ('automatic', 'manual')", name=op.f("ck_blacklist_entries_source_known")
        ),
        sa.CheckConstraint(
            "starts_at < ends_at", name=op.f("ck_blacklist_entries_starts_before_it_ends")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_blacklist_entries_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blacklist_entries")),
    )
    with op.batch_alter_table("blacklist_entries", schema=None) as batch_op:
        batch_op.create_index("ix_blacklist_person_ends", ["person_id", "ends_at"], unique=False)

    op.create_table(
        "hospital_rule_overrides",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("hospital_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("changed_by", sa.String(length=64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hospital_id"],
            ["hospitals.id"],
            name=op.f("fk_hospital_rule_overrides_hospital_id_hospitals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hospital_rule_overrides")),
        sa.UniqueConstraint(
            "hospital_id", "version", name=op.f("uq_hospital_rule_overrides_hospital_id")
        ),
    )
    with op.batch_alter_table("hospital_rule_overrides", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_hospital_rule_overrides_hospital_id"), ["hospital_id"], unique=False
        )

    op.create_table(
        "patient_filings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("person_id", sa.String(length=32), nullable=False),
        sa.Column("hospital_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("his_patient_id", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'filed', 'failed')", name=op.f("ck_patient_filings_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id"], ["hospitals.id"], name=op.f("fk_patient_filings_hospital_id_hospitals")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_patient_filings_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_filings")),
        sa.UniqueConstraint("person_id", "hospital_id", name=op.f("uq_patient_filings_person_id")),
    )
    with op.batch_alter_table("patient_filings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_patient_filings_hospital_id"), ["hospital_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_patient_filings_person_id"), ["person_id"], unique=False
        )

    op.create_table(
        "staff_accounts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("hospital_id", sa.String(length=32), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "role IN ('authority_admin', 'authority_auditor', 'hospital_staff')",
            name=op.f("ck_staff_accounts_role_known"),
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id"], ["hospitals.id"], name=op.f("fk_staff_accounts_hospital_id_hospitals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_accounts")),
        sa.UniqueConstraint("username", name=op.f("uq_staff_accounts_username")),
    )
    op.create_table(
        "blacklist_appeals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("entry_id", sa.String(length=32), nullable=False),
        sa.Column("person_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'granted', 'rejected')",
            name=op.f("ck_blacklist_appeals_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_blacklist_appeals_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["blacklist_entries.id"],
            name=op.f("fk_blacklist_appeals_entry_id_blacklist_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_blacklist_appeals_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blacklist_appeals")),
    )
    with op.batch_alter_table("blacklist_appeals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_blacklist_appeals_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_blacklist_appeals_entry_id"), ["entry_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_blacklist_appeals_person_id"), ["person_id"], unique=False
        )

    op.create_table(
        "patient_identity_changes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("old_person_id", sa.String(length=32), nullable=False),
        sa.Column("new_person_id", sa.String(length=32), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_patient_identity_changes_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["new_person_id"],
            ["persons.id"],
            name=op.f("fk_patient_identity_changes_new_person_id_persons"),
        ),
        sa.ForeignKeyConstraint(
            ["old_person_id"],
            ["persons.id"],
            name=op.f("fk_patient_identity_changes_old_person_id_persons"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_patient_identity_changes_patient_id_patients"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_identity_changes")),
    )
    with op.batch_alter_table("patient_identity_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_patient_identity_changes_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_patient_identity_changes_patient_id"), ["patient_id"], unique=False
        )

    op.create_table(
        "add_on_units",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("booking_id", sa.String(length=32), nullable=False),
        sa.Column("person_id", sa.String(length=32), nullable=False),
        sa.Column("added_by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"], name=op.f("fk_add_on_units_booking_id_bookings")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_add_on_units_person_id_persons")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_add_on_units_session_id_sessions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_add_on_units")),
        sa.UniqueConstraint("booking_id", name=op.f("uq_add_on_units_booking_id")),
    )
    with op.batch_alter_table("add_on_units", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_add_on_units_person_id"), ["person_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_add_on_units_session_id"), ["session_id"], unique=False
        )

    op.create_table(
        "lottery_entries",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("person_id", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("booking_id", sa.String(length=32), nullable=True),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("drawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "status IN ('entered', 'won', 'lost', 'ineligible', 'withdrawn')",
            name=op.f("ck_lottery_entries_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_lottery_entries_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"], name=op.f("fk_lottery_entries_booking_id_bookings")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_lottery_entries_patient_id_patients")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_lottery_entries_person_id_persons")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_lottery_entries_session_id_sessions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lottery_entries")),
        sa.UniqueConstraint("session_id", "person_id", name=op.f("uq_lottery_entries_session_id")),
    )
    with op.batch_alter_table("lottery_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_lottery_entries_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_lottery_entries_session_id"), ["session_id"], unique=False
        )

    op.create_table(
        "strikes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("person_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("booking_id", sa.String(length=32), nullable=True),
        sa.Column("hospital_id", sa.String(length=32), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"], name=op.f("fk_strikes_booking_id_bookings")
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id"], ["hospitals.id"], name=op.f("fk_strikes_hospital_id_hospitals")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_strikes_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strikes")),
        sa.UniqueConstraint("booking_id", "kind", name=op.f("uq_strikes_booking_id")),
    )
    with op.batch_alter_table("strikes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_strikes_person_kind_time", ["person_id", "kind", "occurred_at"], unique=False
        )

    op.create_table(
        "waitlist_entries",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("person_id", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("hospital_id", sa.String(length=32), nullable=False),
        sa.Column("department_id", sa.String(length=32), nullable=True),
        sa.Column("doctor_id", sa.String(length=32), nullable=True),
        sa.Column("session_id", sa.String(length=32), nullable=True),
        sa.Column("date_from", sa.Date(), nullable=False),
        sa.Column("date_to", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("booking_id", sa.String(length=32), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_reason", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "scope IN ('session', 'department', 'doctor')",
            name=op.f("ck_waitlist_entries_scope_known"),
        ),
        sa.CheckConstraint(
            "status IN ('waiting', 'fulfilled', 'cancelled', 'expired', 'removed')",
            name=op.f("ck_waitlist_entries_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_waitlist_entries_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"], name=op.f("fk_waitlist_entries_booking_id_bookings")
        ),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_waitlist_entries_department_id_departments"),
        ),
        sa.ForeignKeyConstraint(
            ["doctor_id"], ["doctors.id"], name=op.f("fk_waitlist_entries_doctor_id_doctors")
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id"],
            ["hospitals.id"],
            name=op.f("fk_waitlist_entries_hospital_id_hospitals"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_waitlist_entries_patient_id_patients")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_waitlist_entries_person_id_persons")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_waitlist_entries_session_id_sessions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waitlist_entries")),
    )
    with op.batch_alter_table("waitlist_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_waitlist_department_status", ["department_id", "status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_waitlist_entries_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index("ix_waitlist_person_status", ["person_id", "status"], unique=False)
        batch_op.create_index("ix_waitlist_session_status", ["session_id", "status"], unique=False)

    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="regular")
        )
        batch_op.add_column(sa.Column("person_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("hospital_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("department_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("doctor_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("visit_date", sa.Date(), nullable=True))
        batch_op.add_column(
            sa.Column("ip_hash", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("device_hash", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("follow_up_until", sa.Date(), nullable=True))
        batch_op.add_column(
            sa.Column("follow_up_visits", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.create_index("ix_bookings_person_visit", ["person_id", "visit_date"], unique=False)
        batch_op.create_index(
            "ix_bookings_device_time", ["device_hash", "created_at"], unique=False
        )
        batch_op.create_index("ix_bookings_ip_time", ["ip_hash", "created_at"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_bookings_department_id_departments"),
            "departments",
            ["department_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_bookings_hospital_id_hospitals"), "hospitals", ["hospital_id"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_bookings_doctor_id_doctors"), "doctors", ["doctor_id"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_bookings_person_id_persons"), "persons", ["person_id"], ["id"]
        )
        batch_op.create_check_constraint(
            "kind_known", "kind IN ('regular', 'waitlist', 'lottery', 'add_on')"
        )
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        # The defaults above only filled existing rows; new rows get theirs from the models.
        batch_op.alter_column("kind", server_default=None)
        batch_op.alter_column("ip_hash", server_default=None)
        batch_op.alter_column("device_hash", server_default=None)
        batch_op.alter_column("follow_up_visits", server_default=None)

    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("person_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("identity_changed_at", sa.DateTime(timezone=True), nullable=True)
        )
    _persons_for_existing_patients()
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.alter_column("person_id", existing_type=sa.String(length=32), nullable=False)
        batch_op.create_index(batch_op.f("ix_patients_person_id"), ["person_id"], unique=False)
        batch_op.create_index(
            "uq_patients_self_person",
            ["person_id"],
            unique=True,
            sqlite_where=sa.text("relation = 'self' AND removed_at IS NULL"),
            postgresql_where=sa.text("relation = 'self' AND removed_at IS NULL"),
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_patients_person_id_persons"), "persons", ["person_id"], ["id"]
        )

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "allocation", sa.String(length=16), nullable=False, server_default="first_come"
            )
        )
        batch_op.add_column(
            sa.Column("lottery_opens_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("lottery_draw_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("lottery_drawn", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("add_on_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.create_check_constraint(
            "allocation_known", "allocation IN ('first_come', 'lottery')"
        )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.alter_column("allocation", server_default=None)
        batch_op.alter_column("lottery_drawn", server_default=None)
        batch_op.alter_column("add_on_count", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_constraint("allocation_known", type_="check")
        batch_op.drop_column("add_on_count")
        batch_op.drop_column("lottery_drawn")
        batch_op.drop_column("lottery_draw_at")
        batch_op.drop_column("lottery_opens_at")
        batch_op.drop_column("allocation")

    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_patients_person_id_persons"), type_="foreignkey")
        batch_op.drop_index(
            "uq_patients_self_person",
            sqlite_where=sa.text("relation = 'self' AND removed_at IS NULL"),
            postgresql_where=sa.text("relation = 'self' AND removed_at IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_patients_person_id"))
        batch_op.drop_column("identity_changed_at")
        batch_op.drop_column("removed_at")
        batch_op.drop_column("person_id")

    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_constraint("kind_known", type_="check")
        batch_op.drop_constraint(batch_op.f("fk_bookings_person_id_persons"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_bookings_doctor_id_doctors"), type_="foreignkey")
        batch_op.drop_constraint(
            batch_op.f("fk_bookings_hospital_id_hospitals"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_bookings_department_id_departments"), type_="foreignkey"
        )
        batch_op.drop_index("ix_bookings_ip_time")
        batch_op.drop_index("ix_bookings_device_time")
        batch_op.drop_index("ix_bookings_person_visit")
        batch_op.drop_column("follow_up_visits")
        batch_op.drop_column("follow_up_until")
        batch_op.drop_column("device_hash")
        batch_op.drop_column("ip_hash")
        batch_op.drop_column("visit_date")
        batch_op.drop_column("doctor_id")
        batch_op.drop_column("department_id")
        batch_op.drop_column("hospital_id")
        batch_op.drop_column("person_id")
        batch_op.drop_column("kind")

    with op.batch_alter_table("waitlist_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_waitlist_session_status")
        batch_op.drop_index("ix_waitlist_person_status")
        batch_op.drop_index(batch_op.f("ix_waitlist_entries_account_id"))
        batch_op.drop_index("ix_waitlist_department_status")

    op.drop_table("waitlist_entries")
    with op.batch_alter_table("strikes", schema=None) as batch_op:
        batch_op.drop_index("ix_strikes_person_kind_time")

    op.drop_table("strikes")
    with op.batch_alter_table("lottery_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lottery_entries_session_id"))
        batch_op.drop_index(batch_op.f("ix_lottery_entries_account_id"))

    op.drop_table("lottery_entries")
    with op.batch_alter_table("add_on_units", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_add_on_units_session_id"))
        batch_op.drop_index(batch_op.f("ix_add_on_units_person_id"))

    op.drop_table("add_on_units")
    with op.batch_alter_table("patient_identity_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_identity_changes_patient_id"))
        batch_op.drop_index(batch_op.f("ix_patient_identity_changes_account_id"))

    op.drop_table("patient_identity_changes")
    with op.batch_alter_table("blacklist_appeals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_blacklist_appeals_person_id"))
        batch_op.drop_index(batch_op.f("ix_blacklist_appeals_entry_id"))
        batch_op.drop_index(batch_op.f("ix_blacklist_appeals_account_id"))

    op.drop_table("blacklist_appeals")
    op.drop_table("staff_accounts")
    with op.batch_alter_table("patient_filings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_filings_person_id"))
        batch_op.drop_index(batch_op.f("ix_patient_filings_hospital_id"))

    op.drop_table("patient_filings")
    with op.batch_alter_table("hospital_rule_overrides", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hospital_rule_overrides_hospital_id"))

    op.drop_table("hospital_rule_overrides")
    with op.batch_alter_table("blacklist_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_blacklist_person_ends")

    op.drop_table("blacklist_entries")
    with op.batch_alter_table("suspicion_signals", schema=None) as batch_op:
        batch_op.drop_index("ix_signals_kind_time")

    op.drop_table("suspicion_signals")
    op.drop_table("region_rules")
    op.drop_table("persons")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_subject")
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")
