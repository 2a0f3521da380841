"""subscriptions: renewals add credit batches per invoice, subscription events applied once

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import kit.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "purchases_applied",
        sa.Column("group_released_at", kit.db.UTCDateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "purchases_applied",
        sa.Column("billing_type", sa.String(length=20), nullable=False, server_default="one_time"),
    )
    op.add_column("purchases_applied", sa.Column("subscription_id", sa.Uuid(), nullable=True))
    # A group place a full refund already took back stays released.
    op.execute(
        "UPDATE purchases_applied SET group_released_at = revoked_at "
        "WHERE group_id IS NOT NULL AND revoked_at IS NOT NULL"
    )

    # A renewal adds a batch to the same order: one batch per invoice instead of per order.
    with op.batch_alter_table("credits") as batch:
        batch.drop_constraint("uq_credits_order_id", type_="unique")
        batch.add_column(sa.Column("invoice_id", sa.String(length=255), nullable=True))
        batch.create_unique_constraint(op.f("uq_credits_invoice_id"), ["invoice_id"])
    op.create_index(op.f("ix_credits_order_id"), "credits", ["order_id"], unique=False)
    op.create_index(
        "uq_credits_order_id_first",
        "credits",
        ["order_id"],
        unique=True,
        postgresql_where=sa.text("invoice_id IS NULL"),
        sqlite_where=sa.text("invoice_id IS NULL"),
    )

    op.create_table(
        "subscription_events_applied",
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("effect", sa.String(length=20), nullable=False),
        sa.Column("invoice_id", sa.String(length=255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("applied_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["businesses.id"],
            name=op.f("fk_subscription_events_applied_business_id_businesses"),
        ),
        sa.PrimaryKeyConstraint(
            "subscription_id",
            "effect",
            "invoice_id",
            "attempt",
            name=op.f("pk_subscription_events_applied"),
        ),
    )
    op.create_index(
        op.f("ix_subscription_events_applied_order_id"),
        "subscription_events_applied",
        ["order_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_subscription_events_applied_order_id"), table_name="subscription_events_applied"
    )
    op.drop_table("subscription_events_applied")
    # Renewal batches cannot fit one-batch-per-order: they go with the column.
    op.execute("DELETE FROM credits WHERE invoice_id IS NOT NULL")
    op.drop_index("uq_credits_order_id_first", table_name="credits")
    op.drop_index(op.f("ix_credits_order_id"), table_name="credits")
    with op.batch_alter_table("credits") as batch:
        batch.drop_constraint("uq_credits_invoice_id", type_="unique")
        batch.drop_column("invoice_id")
        batch.create_unique_constraint(op.f("uq_credits_order_id"), ["order_id"])
    with op.batch_alter_table("purchases_applied") as batch:
        batch.drop_column("subscription_id")
        batch.drop_column("billing_type")
        batch.drop_column("group_released_at")
