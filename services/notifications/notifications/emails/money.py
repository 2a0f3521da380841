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


# -- subscriptions and payment plans ---------------------------------------------------

_IN_ONE = {"week": "a week", "month": "a month", "year": "a year"}


def _interval(billing: dict[str, Any]) -> tuple[str, int]:
    interval = str(billing.get("interval") or "month")
    try:
        count = max(1, int(billing.get("interval_count") or 1))
    except (TypeError, ValueError):
        count = 1
    return interval, count


def every(billing: dict[str, Any]) -> str:
    """'every month', 'every 2 weeks'."""
    interval, count = _interval(billing)
    return f"every {interval}" if count == 1 else f"every {count} {interval}s"


def _after_one_interval(billing: dict[str, Any]) -> str:
    """'in a month', 'in 2 weeks'."""
    interval, count = _interval(billing)
    return (
        f"in {_IN_ONE.get(interval, 'one ' + interval)}"
        if count == 1
        else (f"in {count} {interval}s")
    )


def installments_of(billing: dict[str, Any], installments_total: int | None) -> int | None:
    """How many installments a payment plan has (the event's number, else the billing's)."""
    if installments_total:
        return installments_total
    try:
        return int(billing["installments"]) if billing.get("type") == "payment_plan" else None
    except (KeyError, TypeError, ValueError):
        return None


def subscription_billing(
    billing: dict[str, Any], price: str, installments_total: int | None
) -> str | None:
    """How a subscription's first invoice is billed, ``price`` being one charge:
    "€50.00 every month", "Installment 1 of 3, then €100.00 every month".

    None when ``billing`` is neither recurring nor a payment plan."""
    kind = billing.get("type")
    if kind == "recurring":
        return f"{price} {every(billing)}"
    total = installments_of(billing, installments_total)
    if kind == "payment_plan" and total:
        if total <= 1:
            return "Installment 1 of 1"
        then = every(billing) if total > 2 else _after_one_interval(billing)
        return f"Installment 1 of {total}, then {price} {then}"
    return None
