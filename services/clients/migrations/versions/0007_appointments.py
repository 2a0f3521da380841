"""appointments: schedules, blocked times, appointments; credits remember what they book

Revision ID: 0007_appointments
Revises: 0006
Create Date: 2026-12-03 14:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import kit.db

revision = "0007_appointments"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # None for credits bought before: they book any appointment offering.
    op.add_column("credits", sa.Column("appointment_offering_ids", sa.JSON(), nullable=True))

    op.create_table(
        "appointment_schedules",
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("weekly_hours", sa.JSON(), nullable=False),
        sa.Column("client_notice_hours", sa.Integer(), nullable=False),
        sa.Column("reminder_hours_before", sa.Integer(), nullable=False),
        sa.Column("coupon_sites", sa.JSON(), nullable=False),
        sa.Column("updated_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["businesses.id"],
            name=op.f("fk_appointment_schedules_business_id_businesses"),
        ),
        sa.PrimaryKeyConstraint("business_id", name=op.f("pk_appointment_schedules")),
    )

    op.create_table(
        "blocked_times",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("starts_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["business_id"], ["businesses.id"], name=op.f("fk_blocked_times_business_id_businesses")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blocked_times")),
    )
    op.create_index(
        "ix_blocked_times_business_id_starts_at",
        "blocked_times",
        ["business_id", "starts_at"],
        unique=False,
    )

    op.create_table(
        "appointments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("offering_id", sa.Uuid(), nullable=False),
        sa.Column("offering_version_id", sa.Uuid(), nullable=False),
        sa.Column("offering_name", sa.String(length=200), nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("buffer_minutes", sa.Integer(), nullable=False),
        sa.Column("starts_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("paid_with", sa.String(length=10), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("client_id", sa.Uuid(), nullable=True),
        sa.Column("requester_email", sa.String(length=320), nullable=False),
        sa.Column("requester_name", sa.String(length=200), nullable=False),
        sa.Column("client_time_zone", sa.String(length=64), nullable=False),
        sa.Column("coupon_site", sa.String(length=200), nullable=True),
        sa.Column("coupon_number", sa.String(length=100), nullable=True),
        sa.Column("credit_id", sa.Uuid(), nullable=True),
        sa.Column("credit_returned_at", kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("hold_expires_at", kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("canceled_by", sa.String(length=10), nullable=True),
        sa.Column("created_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_appointments_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["business_id"], ["businesses.id"], name=op.f("fk_appointments_business_id_businesses")
        ),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_appointments_client_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["credit_id"], ["credits.id"], name=op.f("fk_appointments_credit_id_credits")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointments")),
        sa.UniqueConstraint(
            "business_id",
            "idempotency_key",
            name=op.f("uq_appointments_business_id_idempotency_key"),
        ),
        sa.UniqueConstraint("order_id", name=op.f("uq_appointments_order_id")),
    )
    op.create_index(
        "ix_appointments_business_id_starts_at",
        "appointments",
        ["business_id", "starts_at"],
        unique=False,
    )
    op.create_index(
        "ix_appointments_account_id_starts_at",
        "appointments",
        ["account_id", "starts_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_appointments_account_id_starts_at", table_name="appointments")
    op.drop_index("ix_appointments_business_id_starts_at", table_name="appointments")
    op.drop_table("appointments")
    op.drop_index("ix_blocked_times_business_id_starts_at", table_name="blocked_times")
    op.drop_table("blocked_times")
    op.drop_table("appointment_schedules")
    with op.batch_alter_table("credits") as batch:
        batch.drop_column("appointment_offering_ids")
