from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class QuoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    offering_id: uuid.UUID
    discount_code: str | None = Field(None, max_length=40)


class DiscountOut(BaseModel):
    code: str
    amount_off_minor: int


class QuoteOut(BaseModel):
    """``price_minor`` and ``total_minor`` are per charge: one period of a recurring
    offering, one installment of a payment plan."""

    offering_id: uuid.UUID
    business_id: uuid.UUID
    business_name: str | None = None
    version_id: uuid.UUID
    version: int
    name: str
    kind: str
    details: dict[str, Any]
    billing: dict[str, Any]
    currency: str
    price_minor: int
    discount: DiscountOut | None
    total_minor: int
