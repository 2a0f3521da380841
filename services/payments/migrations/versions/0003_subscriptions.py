"""subscriptions and payment plans, invoice payments, card fingerprints

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

import kit.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SUBSCRIPTION_STATUSES = "('incomplete', 'active', 'past_due', 'canceled', 'completed')"


def upgrade() -> None:
    op.add_column("cards", sa.Column("fingerprint", sa.String(length=64), nullable=True))
    op.create_index(
        "uq_cards_customer_id_fingerprint",
        "cards",
        ["customer_id", "fingerprint"],
        unique=True,
        postgresql_where=sa.text("fingerprint IS NOT NULL"),
        sqlite_where=sa.text("fingerprint IS NOT NULL"),
    )
    op.add_column("payments", sa.Column("stripe_invoice_id", sa.String(length=255), nullable=True))
    op.add_column("payments", sa.Column("subscription_id", sa.Uuid(), nullable=True))
    op.create_index("ix_payments_subscription_id", "payments", ["subscription_id"])
    op.create_index("uq_payments_stripe_invoice_id", "payments", ["stripe_invoice_id"], unique=True)
    op.create_table(
        "stripe_plans",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("offering_version_id", sa.Uuid(), nullable=False),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("interval", sa.String(length=10), nullable=False),
        sa.Column("interval_count", sa.Integer(), nullable=False),
        sa.Column("stripe_product_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_plan_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", kit.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_plans")),
        sa.UniqueConstraint(
            "business_id",
            "offering_version_id",
            "amount_minor",
            "currency",
            "interval",
            "interval_count",
            name=op.f("uq_stripe_plans_business_id"),
        ),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("stripe_subscription_id", sa.String(length=255), nullable=True),
        sa.Column("billing_type", sa.String(length=20), nullable=False),
        sa.Column("interval", sa.String(length=10), nullable=False),
        sa.Column("interval_count", sa.Integer(), nullable=False),
        sa.Column("installments_total", sa.Integer(), nullable=True),
        sa.Column("installments_paid", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("current_period_end", kit.db.UTCDateTime(), nullable=True),
        sa.Column("card_id", sa.Uuid(), nullable=True),
        sa.Column("first_payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("latest_invoice_at", kit.db.UTCDateTime(), nullable=True),
        sa.Column("stripe_updated_at", kit.db.UTCDateTime(), nullable=True),
        sa.Column("ended_at", kit.db.UTCDateTime(), nullable=True),
        sa.Column("end_reason", sa.String(length=20), nullable=True),
        sa.Column("created_at", kit.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", kit.db.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            f"status IN {SUBSCRIPTION_STATUSES}", name=op.f("ck_subscriptions_status")
        ),
        sa.CheckConstraint(
            "installments_paid >= 0", name=op.f("ck_subscriptions_installments_paid")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_subscriptions_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_subscriptions_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name=op.f("fk_subscriptions_card_id_cards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("order_id", name=op.f("uq_subscriptions_order_id")),
        sa.UniqueConstraint(
            "stripe_subscription_id", name=op.f("uq_subscriptions_stripe_subscription_id")
        ),
    )
    op.create_index(
        "ix_subscriptions_business_id_created_at", "subscriptions", ["business_id", "created_at"]
    )
    op.create_index("ix_subscriptions_customer_id", "subscriptions", ["customer_id"])
    op.create_table(
        "invoice_failures",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("stripe_invoice_id", sa.String(length=255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("failed_at", kit.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_invoice_failures_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_invoice_failures_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_failures")),
        sa.UniqueConstraint(
            "stripe_invoice_id", "attempt", name=op.f("uq_invoice_failures_stripe_invoice_id")
        ),
    )
    op.create_index(
        "ix_invoice_failures_business_id_failed_at",
        "invoice_failures",
        ["business_id", "failed_at"],
    )


def downgrade() -> None:
    op.drop_table("invoice_failures")
    op.drop_table("subscriptions")
    op.drop_table("stripe_plans")
    op.drop_index("uq_payments_stripe_invoice_id", table_name="payments")
    op.drop_index("ix_payments_subscription_id", table_name="payments")
    op.drop_column("payments", "subscription_id")
    op.drop_column("payments", "stripe_invoice_id")
    op.drop_index("uq_cards_customer_id_fingerprint", table_name="cards")
    op.drop_column("cards", "fingerprint")
