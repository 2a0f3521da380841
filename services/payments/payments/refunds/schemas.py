from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class RefundIn(BaseModel):
    """A coach's refund. Without ``amount_minor``, what is left of the order is refunded."""

    model_config = ConfigDict(extra="forbid")
    amount_minor: int | None = Field(None, ge=1)
    revoke_access: bool = False
    reason: str | None = Field(None, max_length=500)


class RefundOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    amount_minor: int
    currency: str
    reason: str | None
    revoke_access: bool
    origin: str  # coach | stripe
    created_at: datetime
    # The order after this refund.
    order_status: str  # paid (partly refunded) | refunded
    order_amount_minor: int
    refunded_total_minor: int
