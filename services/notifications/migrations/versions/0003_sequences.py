"""sequences

Coach-built sequences of steps linked to an offering (sequences, sequence_steps), the
runs a paid order starts (sequence_runs, sequence_step_runs: a copy of each step with
its due time and status), refunds / subscription ends heard before a run started
(sequence_order_stops), and a read model of the catalog's offerings (known_offerings)
for the names and details of the worksheets and agreements steps hand out.

Revision ID: 0003_sequences
Revises: 0002
Create Date: 2026-12-02 14:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import kit.db

revision = "0003_sequences"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sequences",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("offering_id", sa.Uuid(), nullable=True),
        sa.Column("stop_on_refund", sa.Boolean(), nullable=False),
        sa.Column("stop_on_subscription_end", sa.Boolean(), nullable=False),
        sa.Column("created_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sequences")),
        sa.UniqueConstraint("offering_id", name=op.f("uq_sequences_offering_id")),
    )
    op.create_index(
        "ix_sequences_business_id_created_at",
        "sequences",
        ["business_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "sequence_steps",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("sequence_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("delay_minutes", sa.Integer(), nullable=False),
        sa.Column("delay_from", sa.String(length=10), nullable=False),
        sa.Column("action", sa.String(length=30), nullable=False),
        sa.Column("email_subject", sa.String(length=200), nullable=True),
        sa.Column("email_body_markdown", sa.Text(), nullable=True),
        sa.Column("target_offering_id", sa.Uuid(), nullable=True),
        sa.Column("group_id", sa.Uuid(), nullable=True),
        sa.CheckConstraint(
            "delay_from IN ('start', 'previous')", name=op.f("ck_sequence_steps_delay_from")
        ),
        sa.CheckConstraint(
            "action IN ('email', 'assign_worksheet', 'request_agreement', 'add_to_group')",
            name=op.f("ck_sequence_steps_action"),
        ),
        sa.CheckConstraint("delay_minutes >= 0", name=op.f("ck_sequence_steps_delay_minutes")),
        sa.ForeignKeyConstraint(
            ["sequence_id"],
            ["sequences.id"],
            name=op.f("fk_sequence_steps_sequence_id_sequences"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sequence_steps")),
        sa.UniqueConstraint(
            "sequence_id", "position", name=op.f("uq_sequence_steps_sequence_id_position")
        ),
    )
    op.create_index(
        op.f("ix_sequence_steps_sequence_id"), "sequence_steps", ["sequence_id"], unique=False
    )
    op.create_table(
        "sequence_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("sequence_id", sa.Uuid(), nullable=False),
        sa.Column("sequence_name", sa.String(length=200), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("offering_id", sa.Uuid(), nullable=False),
        sa.Column("offering_name", sa.String(length=200), nullable=False),
        sa.Column("buyer_account_id", sa.Uuid(), nullable=True),
        sa.Column("buyer_email", sa.String(length=320), nullable=False),
        sa.Column("buyer_name", sa.String(length=200), nullable=False),
        sa.Column("business_name", sa.String(length=200), nullable=True),
        sa.Column("started_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("stopped_at", kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("stop_reason", sa.String(length=40), nullable=True),
        sa.Column("created_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'completed', 'stopped')", name=op.f("ck_sequence_runs_status")
        ),
        sa.ForeignKeyConstraint(
            ["sequence_id"],
            ["sequences.id"],
            name=op.f("fk_sequence_runs_sequence_id_sequences"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sequence_runs")),
        sa.UniqueConstraint(
            "sequence_id", "order_id", name=op.f("uq_sequence_runs_sequence_id_order_id")
        ),
    )
    op.create_index(op.f("ix_sequence_runs_order_id"), "sequence_runs", ["order_id"], unique=False)
    op.create_index(
        "ix_sequence_runs_sequence_id_started_at",
        "sequence_runs",
        ["sequence_id", "started_at"],
        unique=False,
    )
    op.create_table(
        "sequence_step_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=30), nullable=False),
        sa.Column("delay_minutes", sa.Integer(), nullable=False),
        sa.Column("delay_from", sa.String(length=10), nullable=False),
        sa.Column("email_subject", sa.String(length=200), nullable=True),
        sa.Column("email_body_markdown", sa.Text(), nullable=True),
        sa.Column("target_offering_id", sa.Uuid(), nullable=True),
        sa.Column("group_id", sa.Uuid(), nullable=True),
        sa.Column("due_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("done_at", kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("retry_at", kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("result_id", sa.Uuid(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'skipped', 'stopped')",
            name=op.f("ck_sequence_step_runs_status"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sequence_runs.id"],
            name=op.f("fk_sequence_step_runs_run_id_sequence_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sequence_step_runs")),
        sa.UniqueConstraint("run_id", "step_id", name=op.f("uq_sequence_step_runs_run_id_step_id")),
    )
    op.create_index(
        "ix_sequence_step_runs_status_due_at",
        "sequence_step_runs",
        ["status", "due_at"],
        unique=False,
    )
    op.create_table(
        "sequence_order_stops",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("cause", sa.String(length=20), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=True),
        sa.Column("occurred_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id", "cause", name=op.f("pk_sequence_order_stops")),
    )
    op.create_table(
        "known_offerings",
        sa.Column("offering_id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("version_id", sa.Uuid(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("archived_at", kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("offering_id", name=op.f("pk_known_offerings")),
    )
    op.create_index(
        op.f("ix_known_offerings_business_id"), "known_offerings", ["business_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_known_offerings_business_id"), table_name="known_offerings")
    op.drop_table("known_offerings")
    op.drop_table("sequence_order_stops")
    op.drop_index("ix_sequence_step_runs_status_due_at", table_name="sequence_step_runs")
    op.drop_table("sequence_step_runs")
    op.drop_index("ix_sequence_runs_sequence_id_started_at", table_name="sequence_runs")
    op.drop_index(op.f("ix_sequence_runs_order_id"), table_name="sequence_runs")
    op.drop_table("sequence_runs")
    op.drop_index(op.f("ix_sequence_steps_sequence_id"), table_name="sequence_steps")
    op.drop_table("sequence_steps")
    op.drop_index("ix_sequences_business_id_created_at", table_name="sequences")
    op.drop_table("sequences")
