"""Dates and billing as a receipt writes them ("March 1, 2026", "Every month").

Amounts come from :mod:`kit.money`, like everywhere else."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from babel.dates import format_date

_ADVERB = {"week": "weekly", "month": "monthly", "year": "yearly"}


def day(moment: datetime, locale: str) -> str:
    return str(format_date(moment.date(), format="long", locale=locale))


def billing_label(billing: dict[str, Any]) -> str:
    """How the order is billed: "One-time payment", "Free", "Every month", "4 installments"."""
    kind = billing.get("type")
    if kind == "free":
        return "Free"
    if kind == "recurring":
        interval = str(billing.get("interval", "month"))
        count = int(billing.get("interval_count", 1) or 1)
        return f"Every {interval}" if count == 1 else f"Every {count} {interval}s"
    if kind == "payment_plan":
        interval = str(billing.get("interval", "month"))
        every = _ADVERB.get(interval, interval)
        return f"Payment plan: {billing.get('installments')} installments, {every}"
    return "One-time payment"
