"""Events published by the payments service (``business_id`` is always set).

Consumers: clients (the effects of a purchase or a refund on the buyer's account),
notifications (the receipt, the refund email), later the catalog (spots and discount redemptions).
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
