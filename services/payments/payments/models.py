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
    brand: Mapped[str] = mapped_column(String(40))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int] = mapped_column(Integer)
    exp_year: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_cards_customer_id", "customer_id"),)


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

    __table_args__ = (
        UniqueConstraint("business_id", "idempotency_key"),
        CheckConstraint(f"status IN {ORDER_STATUSES!r}", name="status"),
        CheckConstraint("amount_minor >= 0 AND discount_minor >= 0", name="amounts"),
        CheckConstraint(
            "refunded_minor >= 0 AND refunded_minor <= amount_minor", name="refunded_minor"
        ),
        Index("ix_orders_business_id_created_at", "business_id", "created_at"),
        Index("ix_orders_business_id_paid_at", "business_id", "paid_at"),
        Index(
            "ix_orders_open_payments",
            "payment_started_at",
            postgresql_where=text("status IN ('pending', 'requires_action')"),
            sqlite_where=text("status IN ('pending', 'requires_action')"),
        ),
    )


class Payment(Base):
    """One granted payment. A one-time order has at most one (the unique index is what
    makes "settle paid" happen once, whoever gets there first); subscriptions and
    payment plans will add one row per charge with their own kind."""

    __tablename__ = "payments"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"))
    kind: Mapped[str] = mapped_column(String(20), default=ONE_TIME)
    amount_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index(
            "uq_payments_one_time_order_id",
            "order_id",
            unique=True,
            postgresql_where=text("kind = 'one_time'"),
            sqlite_where=text("kind = 'one_time'"),
        ),
        Index("ix_payments_business_id_paid_at", "business_id", "paid_at"),
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
