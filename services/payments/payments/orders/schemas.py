from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kit.validation import Email, Name


class OrderIn(BaseModel):
    """What a buyer may say. Prices never come from here (any other field is a 422)."""

    model_config = ConfigDict(extra="forbid")
    offering_id: uuid.UUID
    discount_code: str | None = Field(None, max_length=40)
    # Required without a bearer token (a logged-in buyer is who the token says).
    name: Name | None = None
    email: Email | None = None
    # Buying an appointment offering from the booking page: the requested appointment.
    appointment_id: uuid.UUID | None = None


class PayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # A PaymentMethod id from confirmCardSetup, or the id of a saved card (cards[].id).
    payment_method_id: str = Field(min_length=1, max_length=255)


class OrderOut(BaseModel):
    id: uuid.UUID
    business_id: uuid.UUID
    offering_id: uuid.UUID
    offering_version_id: uuid.UUID
    offering_name: str
    kind: str
    details: dict[str, Any]
    billing: dict[str, Any]
    buyer_account_id: uuid.UUID | None
    buyer_email: str
    buyer_name: str
    amount_minor: int
    currency: str
    discount_code: str | None
    discount_minor: int
    status: str  # pending | requires_action | paid | failed | refunded | canceled
    failure_reason: str | None
    created_at: datetime
    paid_at: datetime | None
    # Only in answers to /pay and /refresh while status is requires_action: the
    # PaymentIntent's secret for Stripe.js confirmCardPayment (3-D Secure).
    client_secret: str | None = None
    # Set for a recurring offering or payment plan once its subscription exists.
    subscription_id: uuid.UUID | None = None
    appointment_id: uuid.UUID | None = None


class StripeSetupOut(BaseModel):
    publishable_key: str
    client_secret: str  # of the order's SetupIntent (confirmCardSetup)
    js_url: str


class CardOut(BaseModel):
    id: uuid.UUID
    brand: str
    last4: str
    exp_month: int
    exp_year: int


class OrderCreated(BaseModel):
    order: OrderOut
    # Null for a free order (paid at once, nothing to collect).
    stripe: StripeSetupOut | None
    cards: list[CardOut]
    # Lets whoever holds it read and pay this order (?access_token=...), logged in or not.
    access_token: str


class OrderList(BaseModel):
    items: list[OrderOut]
    total: int
    limit: int
    offset: int


class MyOrderOut(BaseModel):
    """One of the buyer's purchases, for their purchase history."""

    id: uuid.UUID
    business_id: uuid.UUID
    business_name: str
    offering_name: str
    kind: str
    amount_minor: int
    currency: str
    # What the order charges, with its billing ("$30.00 / month", "Free").
    price_label: str
    status: str  # paid | refunded (refunded_minor tells how much)
    paid_at: datetime | None
    created_at: datetime
    refunded_minor: int


class MyOrders(BaseModel):
    """The logged-in buyer's paid orders in every business, newest first."""

    items: list[MyOrderOut]
    total: int
    limit: int
    offset: int
