"""Events published by the payments service (``business_id`` is always set).

Consumers: clients (the effects of a purchase, a renewal, a refund or the end of a
subscription on the buyer's account), notifications (receipts, the refund, failed
payment and subscription-ended emails), later the catalog (spots and discount
redemptions).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field

from kit.contracts.base import Event


class OrderPaidV1(Event):
    """An order was paid (or was free): granted exactly once per order.

    ``amount_minor`` is what was charged (after the discount) in the currency's
    minor units; ``discount_minor`` is what the discount took off.
    """

    name: ClassVar[str] = "payments.order_paid.v1"

    order_id: uuid.UUID
    offering_id: uuid.UUID
    offering_version_id: uuid.UUID
    offering_name: str
    kind: str
    details: dict[str, Any] = Field(default_factory=dict)
    billing: dict[str, Any] = Field(default_factory=dict)
    buyer_account_id: uuid.UUID | None = None
    buyer_email: str
    buyer_name: str
    amount_minor: int
    currency: str
    discount_code: str | None = None
    discount_minor: int = 0
    paid_at: datetime
    business_name: str | None = None
    # Set for a subscription or payment plan (its first invoice is this order's payment).
    subscription_id: uuid.UUID | None = None
    next_charge_at: datetime | None = None
    installments_total: int | None = None
    # The appointment request this order pays for (an appointment offering bought
    # from the booking page); the clients service makes the request when it is paid.
    appointment_id: uuid.UUID | None = None


class OrderRefundedV1(Event):
    """Money was given back on a paid order: once per refund (the ``refunds`` row).

    ``amount_minor`` is this refund; ``refunded_total_minor`` everything refunded on the
    order so far; ``full`` says the order is now refunded entirely. ``revoke_access``
    asks the clients service to take back what the order gave (it does so only with
    ``full``). A refund made in Stripe's dashboard comes with ``origin`` "stripe" and
    never revokes.
    """

    name: ClassVar[str] = "payments.order_refunded.v1"

    order_id: uuid.UUID
    refund_id: uuid.UUID
    amount_minor: int
    currency: str
    refunded_total_minor: int
    full: bool
    revoke_access: bool
    buyer_email: str
    buyer_account_id: uuid.UUID | None = None
    buyer_name: str = ""
    offering_name: str
    kind: str = ""
    business_name: str | None = None
    origin: str = "coach"
    refunded_at: datetime


# -- subscriptions and payment plans ---------------------------------------------------
#
# A recurring offering or a payment plan is one order with one Stripe Subscription.
# Its first paid invoice is the order's ``payments.order_paid.v1`` (with
# ``subscription_id`` and ``next_charge_at`` set); every later paid invoice is one
# ``payments.subscription_renewed.v1``. ``subscription_id`` is always ours (a UUID),
# never Stripe's.


class SubscriptionRenewedV1(Event):
    """A later installment or renewal was paid: once per Stripe invoice.

    ``installment`` counts paid invoices of the subscription, the first one included
    (so the first renewal is 2). For a payment plan ``installments_total`` is set and
    ``completed`` says this was the last installment (access is kept, nothing more is
    charged, ``next_charge_at`` is None).
    """

    name: ClassVar[str] = "payments.subscription_renewed.v1"

    subscription_id: uuid.UUID
    order_id: uuid.UUID
    invoice_id: str
    offering_id: uuid.UUID
    offering_version_id: uuid.UUID
    offering_name: str
    kind: str
    details: dict[str, Any] = Field(default_factory=dict)
    billing: dict[str, Any] = Field(default_factory=dict)
    buyer_account_id: uuid.UUID | None = None
    buyer_email: str
    buyer_name: str
    amount_minor: int
    currency: str
    period_start: datetime | None = None
    period_end: datetime | None = None
    next_charge_at: datetime | None = None
    installment: int
    installments_total: int | None = None
    completed: bool = False
    paid_at: datetime
    business_name: str | None = None


class SubscriptionPaymentFailedV1(Event):
    """A renewal or installment could not be charged: the subscription is past due.

    Once per failed invoice attempt. ``update_card_path`` is the gateway page (with
    its own access token) where the buyer gives a new card without logging in;
    notifications makes it absolute with the public base URL.
    """

    name: ClassVar[str] = "payments.subscription_payment_failed.v1"

    subscription_id: uuid.UUID
    order_id: uuid.UUID
    invoice_id: str
    attempt: int = 1
    offering_name: str
    kind: str
    buyer_account_id: uuid.UUID | None = None
    buyer_email: str
    buyer_name: str
    amount_minor: int
    currency: str
    failure_message: str | None = None
    next_attempt_at: datetime | None = None
    update_card_path: str
    failed_at: datetime
    business_name: str | None = None


class SubscriptionEndedV1(Event):
    """A subscription or payment plan is over: once per subscription.

    ``reason``: ``canceled`` (canceled at period end, by the buyer or the coach),
    ``payment_failed`` (Stripe gave up retrying), ``completed`` (a payment plan's last
    installment was paid). ``revoke_access`` is False only for ``completed``: a
    finished plan keeps what it bought; otherwise what the subscription gave ends.
    Both the buyer and the coach are told.
    """

    name: ClassVar[str] = "payments.subscription_ended.v1"

    subscription_id: uuid.UUID
    order_id: uuid.UUID
    offering_id: uuid.UUID
    offering_name: str
    kind: str
    details: dict[str, Any] = Field(default_factory=dict)
    billing: dict[str, Any] = Field(default_factory=dict)
    buyer_account_id: uuid.UUID | None = None
    buyer_email: str
    buyer_name: str
    reason: str
    revoke_access: bool
    installments_paid: int = 0
    ended_at: datetime
    business_name: str | None = None
