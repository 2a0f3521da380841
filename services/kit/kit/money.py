"""Money as people read and type it, from ISO 4217 minor units (CLDR data via Babel).

Every service and page formats amounts the same way: ``12000, "USD"`` is
"$120.00", ``5000, "JPY"`` is "¥5,000" (JPY has no minor unit, KWD three).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from babel.numbers import format_currency, get_currency_precision

DEFAULT_LOCALE = "en_US"


def exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit (USD 2, JPY 0, KWD 3); 2 when unknown."""
    try:
        return int(get_currency_precision((currency or "USD").strip().upper()))
    except (ValueError, KeyError):
        return 2


def amount(minor: int, currency: str, locale: str = DEFAULT_LOCALE) -> str:
    """``12000, "USD"`` -> ``"$120.00"``; an unknown code is written plainly, never an error."""
    code = (currency or "").strip().upper()
    try:
        value = Decimal(minor).scaleb(-exponent(code))
        return str(format_currency(value, code, locale=locale, currency_digits=True))
    except Exception:  # a receipt or a timeline line must not fail over formatting
        return f"{minor} {code} (minor units)"


def to_minor(text: str, currency: str) -> int | None:
    """What a coach typed (``"120"``, ``"120.00"``) in minor units; None if not a plain amount."""
    cleaned = (text or "").strip().replace(",", "").replace(" ", "")
    if not cleaned:
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0:
        return None
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        return None
    return int(scaled)


def to_major(minor: int | None, currency: str) -> str:
    """``12000, "USD"`` -> ``"120.00"`` (for a form field)."""
    if minor is None:
        return ""
    places = exponent(currency)
    return f"{Decimal(minor).scaleb(-places):.{places}f}"


_ADVERB = {"week": "weekly", "month": "monthly", "year": "yearly"}


def _every(interval: str, count: int) -> str:
    return interval if count == 1 else f"{count} {interval}s"


def price_label(
    price_minor: int, currency: str, billing: dict[str, Any], locale: str = DEFAULT_LOCALE
) -> str:
    """What a buyer reads: "Free", "$120.00", "$30.00 / month", "4 × $50.00 monthly"
    (``billing`` as the catalog has it: type, interval, interval_count, installments)."""
    kind = billing.get("type")
    if kind == "free":
        return "Free"
    money = amount(price_minor, currency, locale)
    interval = str(billing.get("interval", "month"))
    count = int(billing.get("interval_count", 1) or 1)
    if kind == "recurring":
        return f"{money} / {_every(interval, count)}"
    if kind == "payment_plan":
        when = _ADVERB.get(interval, interval) if count == 1 else f"every {_every(interval, count)}"
        return f"{billing.get('installments')} × {money} {when}"
    return money
