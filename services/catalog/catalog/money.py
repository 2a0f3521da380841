"""Currencies and prices: which codes exist, their minor units, and price labels.

The list of currencies is the CLDR data shipped with Babel: every ISO 4217
code that is legal tender somewhere today (so no funds codes such as XAU or
XTS, and no withdrawn ones such as DEM). Minor units also come from CLDR
(JPY has none, KWD three).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from babel.core import get_global
from babel.numbers import get_territory_currencies

from kit.money import amount


def _current_currencies() -> frozenset[str]:
    today = date.today()
    codes: set[str] = set()
    for territory in get_global("territory_currencies"):
        codes.update(get_territory_currencies(territory, today, tender=True))
    return frozenset(codes)


CURRENCIES = _current_currencies()
MAX_PRICE_MINOR = 99_999_999


def normalize_currency(value: str) -> str:
    """An ISO 4217 code in use today, upper case ("usd" is accepted)."""
    code = value.strip().upper()
    if code not in CURRENCIES:
        raise ValueError("not a known ISO 4217 currency code")
    return code


_ADVERB = {"week": "weekly", "month": "monthly", "year": "yearly"}


def _every(interval: str, count: int) -> str:
    return interval if count == 1 else f"{count} {interval}s"


def price_label(
    price_minor: int, currency: str, billing: dict[str, Any], locale: str = "en_US"
) -> str:
    """What a buyer reads: "Free", "$120.00", "$30.00 / month", "4 × $50.00 monthly"."""
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
