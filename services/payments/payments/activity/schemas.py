from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel

Kind = Literal["purchase", "failure", "refund", "renewal", "payment_failed", "subscription_ended"]
Period = Literal["day", "week", "month"]


class ActivityEntry(BaseModel):
    """One line of the feed. ``id`` is the order's (purchase, failure), the refund's, the
    invoice payment's (renewal), the failed attempt's (payment_failed) or the
    subscription's (subscription_ended)."""

    id: uuid.UUID
    kind: Kind
    at: datetime  # paid (purchase), failed (failure), refunded (refund)
    order_id: uuid.UUID
    offering_name: str
    buyer_name: str
    buyer_email: str
    amount_minor: int  # the order's amount, or this refund's
    currency: str
    # purchase: the order's status now (paid, refunded); failure: failed; refund: refunded
    status: str
    order_status: str
    refunded_minor: int  # of the order, so far
    refundable_minor: int  # what a refund of this entry could still give back (purchases)
    discount_code: str | None = None
    failure_reason: str | None = None  # failures
    reason: str | None = None  # refunds
    origin: str | None = None  # refunds: coach | stripe
    revoke_access: bool | None = None  # refunds
    subscription_id: uuid.UUID | None = None  # renewals, payment failures, ends
    installment: int | None = None  # renewals: paid invoices so far
    end_reason: str | None = None  # subscription_ended: canceled | payment_failed | completed


class CurrencyTotal(BaseModel):
    currency: str
    gross_minor: int  # purchases paid in the range
    refunded_minor: int  # refunds made in the range
    net_minor: int


class PeriodTotal(CurrencyTotal):
    period: Period
    period_start: date  # the day, the Monday of the week, the first of the month (UTC)


class ActivityPage(BaseModel):
    items: list[ActivityEntry]
    limit: int
    # Pass as ?cursor= for the next (older) page; null on the last page.
    next_cursor: str | None
    # For the date range (whatever the kinds asked): per currency, and per period
    # and currency when ?period= is given (newest period first).
    summary: list[CurrencyTotal]
    totals: list[PeriodTotal]
