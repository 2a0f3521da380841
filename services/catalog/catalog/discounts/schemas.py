from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from catalog.money import MAX_PRICE_MINOR, normalize_currency

CODE_PATTERN = r"^[A-Za-z0-9_-]{3,40}$"
Code = Annotated[str, StringConstraints(strip_whitespace=True, pattern=CODE_PATTERN)]
Currency = Annotated[str, StringConstraints(max_length=3), AfterValidator(normalize_currency)]


class DiscountCodeIn(BaseModel):
    """Exactly one of ``percent_off`` and ``amount_off_minor`` (with its ``currency``)."""

    model_config = ConfigDict(extra="forbid")
    code: Code
    percent_off: int | None = Field(None, strict=True, ge=1, le=100)
    amount_off_minor: int | None = Field(None, strict=True, ge=1, le=MAX_PRICE_MINOR)
    currency: Currency | None = None
    expires_at: AwareDatetime | None = None
    max_redemptions: int | None = Field(None, strict=True, ge=1, le=10_000_000)
    max_per_client: int | None = Field(None, strict=True, ge=1, le=10_000)
    offering_ids: list[uuid.UUID] = Field(default_factory=list, max_length=500)


class DiscountCodeOut(BaseModel):
    id: uuid.UUID
    business_id: uuid.UUID
    code: str
    percent_off: int | None
    amount_off_minor: int | None
    currency: str | None
    expires_at: datetime | None
    max_redemptions: int | None
    max_per_client: int | None
    offering_ids: list[uuid.UUID]
    redemptions: int
    created_at: datetime
    # "10% off" or "$5.00 off", as a buyer reads it.
    label: str


class DiscountCodeList(BaseModel):
    items: list[DiscountCodeOut]
