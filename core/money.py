"""Amounts are whole minor units (cents); this is how they read in the tenant's currency."""

from __future__ import annotations

# ISO 4217 currencies without minor units (amounts are stored in minor units).
ZERO_DECIMAL = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "HUF", "XAF", "XOF", "UGX", "PYG"})
# Offered in the app's pickers (any ISO 4217 code works from the CLI).
COMMON_CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD", "CHF", "JPY", "SEK", "NOK", "DKK", "PLN", "NZD")
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CHF": "CHF ", "CAD": "CA$", "AUD": "A$"}


def money(minor: int | None, currency: str) -> str:
    """12345 USD -> '$123.45'; -500 EUR -> '-€5.00'; 1200 JPY -> '¥1,200'."""
    if minor is None:
        return ""
    currency = currency.strip().upper()
    digits = 0 if currency in ZERO_DECIMAL else 2
    amount = abs(minor) / (10**digits)
    sign = "-" if minor < 0 else ""
    symbol = SYMBOLS.get(currency)
    text = f"{amount:,.{digits}f}"
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency}"
