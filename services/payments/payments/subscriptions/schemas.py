from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class BillingCardOut(BaseModel):
    id: uuid.UUID
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    business_id: uuid.UUID
    business_name: str | None = None


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    business_id: uuid.UUID
    business_name: str | None
    order_id: uuid.UUID
    offering_id: uuid.UUID
    offering_name: str
    kind: str
    billing_type: str  # recurring | payment_plan
    status: str  # incomplete | active | past_due | canceled | completed
    amount_minor: int
    currency: str
    price_label: str
    interval: str
    interval_count: int
    installments_total: int | None
    installments_paid: int
    current_period_end: datetime | None
    # When the next charge happens; None once canceled at period end, ended or complete.
    next_charge_at: datetime | None
    cancel_at_period_end: bool
    # Only a buyer's recurring subscription that is still running can be canceled.
    can_cancel: bool
    card: BillingCardOut | None
    ended_at: datetime | None
    end_reason: str | None
    created_at: datetime


class MyBilling(BaseModel):
    cards: list[BillingCardOut]
    subscriptions: list[SubscriptionOut]


class CardSetupOut(BaseModel):
    publishable_key: str
    client_secret: str  # of a SetupIntent for the buyer's Stripe customer (confirmCardSetup)
    js_url: str


class NewCardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_method_id: str = Field(min_length=1, max_length=255)
