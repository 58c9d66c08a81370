"""Money in the tenant's currency and times in its time zone, the same way on every page."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from core.money import SYMBOLS, ZERO_DECIMAL, money  # noqa: F401  (pages format money from here)


def local_time(at: datetime | str | None, zone: ZoneInfo | str) -> str:
    """A moment as the tenant reads it: '2024-11-29 14:05' in its time zone."""
    if at is None or at == "":
        return ""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    zone = ZoneInfo(zone) if isinstance(zone, str) else zone
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def major_units(minor: int, currency: str) -> str:
    """What a person types for an amount: 1250 USD -> '12.50'; 1200 JPY -> '1200'."""
    from decimal import Decimal

    digits = 0 if currency.strip().upper() in ZERO_DECIMAL else 2
    return f"{Decimal(minor).scaleb(-digits):.{digits}f}"


def minor_units(text: str, currency: str, what: str = "price") -> int:
    """An amount typed in major units, in minor units: '12.5' USD -> 1250, '1,200' JPY -> 1200.
    Raises ValueError with a sentence (about `what`) to show when it is not an amount of that currency.
    The range (no negative prices, an upper bound) is core's to check."""
    from decimal import Decimal, InvalidOperation

    currency = currency.strip().upper()
    digits = 0 if currency in ZERO_DECIMAL else 2
    cleaned = (text or "").strip().replace(",", "").replace(" ", "")
    for symbol in (SYMBOLS.get(currency, "").strip(), currency):
        if symbol:
            cleaned = cleaned.replace(symbol, "")
    if not cleaned:
        raise ValueError(f"{what} is required")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"{what}: '{text.strip()[:30]}' is not an amount in {currency}") from None
    if not amount.is_finite():
        raise ValueError(f"{what}: '{text.strip()[:30]}' is not an amount in {currency}")
    if amount.adjusted() > 15:
        raise ValueError(f"{what}: '{text.strip()[:30]}' is far too large")
    scaled = amount.scaleb(digits)
    if scaled != scaled.to_integral_value():
        places = f"{digits} decimal places" if digits else "no decimal places"
        raise ValueError(f"{what}: an amount in {currency} has at most {places}")
    return int(scaled)
