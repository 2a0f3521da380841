"""Tables of the payments service.

Every row carries ``business_id`` and every query filters by it (the Stripe
event log is the one exception: it belongs to the platform's Stripe account).
Prices come only from the catalog's quotes; what an order was sold for is
copied onto it when it is created and never changes afterwards.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kit.db import UTCDateTime, new_metadata, utcnow
from kit.messaging import inbox_table, outbox_table

PENDING, REQUIRES_ACTION, PAID, FAILED, REFUNDED, CANCELED = (
    "pending",
    "requires_action",
    "paid",
    "failed",
    "refunded",
    "canceled",
)
ORDER_STATUSES = (PENDING, REQUIRES_ACTION, PAID, FAILED, REFUNDED, CANCELED)
# Orders whose payment is still open (a webhook or reconciliation may settle them).
OPEN_STATUSES = (PENDING, REQUIRES_ACTION)
ONE_TIME = "one_time"
# A paid Stripe invoice of a subscription or payment plan (one payment row per invoice).
INVOICE = "invoice"
RECURRING, PAYMENT_PLAN = "recurring", "payment_plan"
SUBSCRIPTION_BILLING = (RECURRING, PAYMENT_PLAN)

# Subscription statuses. ``incomplete``: the first invoice is not paid yet;
# ``completed``: a payment plan's last installment is paid (access kept);
# ``canceled``: ended (at period end, or Stripe gave up) — or never started.
INCOMPLETE, ACTIVE, PAST_DUE, COMPLETED = "incomplete", "active", "past_due", "completed"
SUBSCRIPTION_STATUSES = (INCOMPLETE, ACTIVE, PAST_DUE, CANCELED, COMPLETED)
ENDED_STATUSES = (CANCELED, COMPLETED)


class Base(DeclarativeBase):
    metadata = new_metadata()


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)


class Customer(Base):
    """A buyer of one business, and their Stripe Customer (one per business and email)."""

    __tablename__ = "customers"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    account_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    email: Mapped[str] = mapped_column(String(320))
    # Set in the transaction that claimed the row (null only inside it).
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("business_id", "email"),
        Index("ix_customers_account_id", "account_id"),
    )


class Card(Base):
    """A saved card: what a buyer needs to recognise it, nothing more."""

    __tablename__ = "cards"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    stripe_payment_method_id: Mapped[str] = mapped_column(String(255), unique=True)
    # Stripe's fingerprint of the card number: the same card given twice is one row.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    brand: Mapped[str] = mapped_column(String(40))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int] = mapped_column(Integer)
    exp_year: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_cards_customer_id", "customer_id"),
        Index(
            "uq_cards_customer_id_fingerprint",
            "customer_id",
            "fingerprint",
            unique=True,
            postgresql_where=text("fingerprint IS NOT NULL"),
            sqlite_where=text("fingerprint IS NOT NULL"),
        ),
    )


class Order(Base):
    """One purchase of one offering version, at the price the catalog quoted."""

    __tablename__ = "orders"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    business_name: Mapped[str | None] = mapped_column(String(200))
    offering_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    offering_version_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    offering_name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(20))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    billing: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    buyer_account_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    buyer_email: Mapped[str] = mapped_column(String(320))
    buyer_name: Mapped[str] = mapped_column(String(200))
    amount_minor: Mapped[int] = mapped_column(Integer)  # what is charged (after the discount)
    currency: Mapped[str] = mapped_column(String(3))
    discount_code: Mapped[str | None] = mapped_column(String(40))
    discount_minor: Mapped[int] = mapped_column(Integer, default=0)
    # What the refunds of this order gave back so far (never more than amount_minor).
    refunded_minor: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(20), default=PENDING)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"))
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    stripe_setup_intent_id: Mapped[str | None] = mapped_column(String(255))
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    payment_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    # The appointment request this order pays for (made by the clients service when paid).
    appointment_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    __table_args__ = (
        UniqueConstraint("business_id", "idempotency_key"),
        CheckConstraint(f"status IN {ORDER_STATUSES!r}", name="status"),
        CheckConstraint("amount_minor >= 0 AND discount_minor >= 0", name="amounts"),
        CheckConstraint(
            "refunded_minor >= 0 AND refunded_minor <= amount_minor", name="refunded_minor"
        ),
        Index("ix_orders_business_id_created_at", "business_id", "created_at"),
        Index("ix_orders_business_id_paid_at", "business_id", "paid_at"),
        # A buyer's purchase history (GET /me/orders).
        Index("ix_orders_buyer_account_id", "buyer_account_id"),
        Index("ix_orders_buyer_email", "buyer_email"),
        Index(
            "ix_orders_open_payments",
            "payment_started_at",
            postgresql_where=text("status IN ('pending', 'requires_action')"),
            sqlite_where=text("status IN ('pending', 'requires_action')"),
        ),
    )


class Payment(Base):
    """One granted payment. A one-time order has at most one (the unique index is what
    makes "settle paid" happen once, whoever gets there first); a subscription or
    payment plan has one per paid Stripe invoice (unique invoice id), the first of
    which pays its order."""

    __tablename__ = "payments"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"))
    kind: Mapped[str] = mapped_column(String(20), default=ONE_TIME)
    amount_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255))
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_payments_subscription_id", "subscription_id"),
        Index("uq_payments_stripe_invoice_id", "stripe_invoice_id", unique=True),
        Index(
            "uq_payments_one_time_order_id",
            "order_id",
            unique=True,
            postgresql_where=text("kind = 'one_time'"),
            sqlite_where=text("kind = 'one_time'"),
        ),
        Index("ix_payments_business_id_paid_at", "business_id", "paid_at"),
    )


class StripePlan(Base):
    """The Stripe Product + Plan that bills one offering version at one price: made once,
    then shared by every subscription to it (claimed here before the Stripe calls)."""

    __tablename__ = "stripe_plans"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    offering_version_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    amount_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    interval: Mapped[str] = mapped_column(String(10))
    interval_count: Mapped[int] = mapped_column(Integer)
    stripe_product_id: Mapped[str | None] = mapped_column(String(255))
    stripe_plan_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint(
            "business_id",
            "offering_version_id",
            "amount_minor",
            "currency",
            "interval",
            "interval_count",
            name="uq_stripe_plans_business_id",
        ),
    )


class Subscription(Base):
    """A recurring offering or payment plan bought by one order: our mirror of one Stripe
    Subscription. Changed only with its order's row locked (order first, then this)."""

    __tablename__ = "subscriptions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), unique=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    billing_type: Mapped[str] = mapped_column(String(20))  # recurring | payment_plan
    interval: Mapped[str] = mapped_column(String(10))
    interval_count: Mapped[int] = mapped_column(Integer)
    installments_total: Mapped[int | None] = mapped_column(Integer)
    installments_paid: Mapped[int] = mapped_column(Integer, default=0)
    amount_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20), default=INCOMPLETE)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    card_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("cards.id"))
    # The first invoice's PaymentIntent (3-D Secure is confirmed on it).
    first_payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    # ``created`` of the newest invoice whose outcome (paid or failed) set the status:
    # news about an older invoice never overrides it (webhooks come out of order).
    latest_invoice_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # ``created`` of the newest customer.subscription.updated applied: older ones are stale.
    stripe_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint(f"status IN {SUBSCRIPTION_STATUSES!r}", name="status"),
        CheckConstraint("installments_paid >= 0", name="installments_paid"),
        Index("ix_subscriptions_business_id_created_at", "business_id", "created_at"),
        Index("ix_subscriptions_customer_id", "customer_id"),
    )


class InvoiceFailure(Base):
    """One failed attempt to charge a renewal or installment: the failed-payment email
    and the activity entry happen once per (invoice, attempt)."""

    __tablename__ = "invoice_failures"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"))
    subscription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subscriptions.id"))
    stripe_invoice_id: Mapped[str] = mapped_column(String(255))
    attempt: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    failure_message: Mapped[str | None] = mapped_column(Text)
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("stripe_invoice_id", "attempt"),
        Index("ix_invoice_failures_business_id_failed_at", "business_id", "failed_at"),
    )


class Refund(Base):
    """Money given back on one order: by a coach (``POST …/orders/{id}/refunds``) or in
    Stripe's dashboard (the ``charge.refunded`` webhook). One row per refund; the order
    row is locked while one is made, so the sum never exceeds what was paid."""

    __tablename__ = "refunds"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"))
    amount_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(Text)
    revoke_access: Mapped[bool] = mapped_column(Boolean, default=False)
    # coach (our API) | stripe (made in Stripe's dashboard, heard by webhook)
    origin: Mapped[str] = mapped_column(String(20))
    # The coach's Idempotency-Key, or one derived from the Stripe charge for a webhook.
    idempotency_key: Mapped[str] = mapped_column(String(200))
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("business_id", "idempotency_key"),
        CheckConstraint("amount_minor > 0", name="amount"),
        Index("ix_refunds_business_id_created_at", "business_id", "created_at"),
        Index("ix_refunds_order_id", "order_id"),
    )


class StripeEvent(Base):
    """A webhook event as Stripe sent it (signature checked), processed by the worker."""

    __tablename__ = "stripe_events"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    stripe_event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index(
            "ix_stripe_events_pending",
            "available_at",
            postgresql_where=text("processed_at IS NULL"),
            sqlite_where=text("processed_at IS NULL"),
        ),
    )
