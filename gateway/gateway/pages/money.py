"""Prices in forms: major units as a coach types them ("120.00") to minor units
(12000) and back. Price labels come from the catalog with every offering.

The catalog service owns prices; this only formats what it returns and reads
what a coach types. Minor units per currency come from CLDR (Babel), like the
catalog's own list: JPY has none, KWD three.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from babel.numbers import get_currency_precision


def exponent(currency: str) -> int:
    try:
        return int(get_currency_precision((currency or "USD").upper()))
    except (ValueError, KeyError):
        return 2


def to_minor(text: str, currency: str) -> int | None:
    """``"120"`` or ``"120.00"`` in USD -> 12000; None when it is not a plain amount."""
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
    """12000 in USD -> ``"120.00"`` (for a form field)."""
    if minor is None:
        return ""
    places = exponent(currency)
    return f"{Decimal(minor).scaleb(-places):.{places}f}"
