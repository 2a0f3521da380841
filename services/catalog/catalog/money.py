"""Currencies: which codes exist and their minor units (price labels live in kit.money).

The list of currencies is the CLDR data shipped with Babel: every ISO 4217
code that is legal tender somewhere today (so no funds codes such as XAU or
XTS, and no withdrawn ones such as DEM). Minor units also come from CLDR
(JPY has none, KWD three).
"""

from __future__ import annotations

from datetime import date

from babel.core import get_global
from babel.numbers import get_territory_currencies


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
