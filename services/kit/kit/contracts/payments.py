"""Events published by the payments service (``business_id`` is always set).

Consumers: clients (the effects of a purchase on the buyer's account),
notifications (the receipt), later the catalog (spots and discount redemptions).
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
