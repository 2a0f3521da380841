"""sequence actions: steps of a notifications sequence applied once per (run, step)

Revision ID: 0008_sequence_actions
Revises: 0007_appointments
Create Date: 2026-12-02 15:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import kit.db

revision = "0008_sequence_actions"
down_revision = "0007_appointments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sequence_actions_applied",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=30), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("entitlement_id", sa.Uuid(), nullable=True),
        sa.Column("group_id", sa.Uuid(), nullable=True),
        sa.Column("applied_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["businesses.id"],
            name=op.f("fk_sequence_actions_applied_business_id_businesses"),
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_sequence_actions_applied_client_id_clients"),
        ),
        sa.PrimaryKeyConstraint("run_id", "step_id", name=op.f("pk_sequence_actions_applied")),
    )
    op.create_index(
        op.f("ix_sequence_actions_applied_order_id"),
        "sequence_actions_applied",
        ["order_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_sequence_actions_applied_order_id"), table_name="sequence_actions_applied"
    )
    op.drop_table("sequence_actions_applied")
