from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

from clients.identity.schemas import Input, OpaqueToken, Password


class ClaimConsume(Input):
    """Set the password of an account a purchase made (from the claim-your-account email)."""

    token: OpaqueToken
    password: Password


class CreditOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    offering_id: uuid.UUID
    offering_name: str
    total: int
    remaining: int
    expires_at: datetime | None
    expired: bool
    # "3 of 5 left"
    label: str
    purchased_at: datetime


class EntitlementOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    offering_id: uuid.UUID
    offering_name: str
    kind: str
    # active | past_due (a subscription payment failed; access kept while it is retried) |
    # ended (the subscription ended) | group_missing | revoked (refunded)
    status: str
    # free | one_time | recurring | payment_plan
    billing_type: str = "one_time"
    purchased_at: datetime


class BusinessPurchases(BaseModel):
    business_id: uuid.UUID
    business_name: str
    business_slug: str
    credits: list[CreditOut]
    entitlements: list[EntitlementOut]


class MyPurchases(BaseModel):
    """The caller's credits and entitlements, per business (newest first within each)."""

    items: list[BusinessPurchases]
