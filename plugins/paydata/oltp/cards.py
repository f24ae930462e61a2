"""Pure card and money rules used by the write path (no database, no keys).

Brand detection by IIN range, expiry checks, processing fees and test-card generation. Nothing
here ever returns or logs a full card number except :func:`luhn_complete`, which builds one.
"""

from __future__ import annotations

import datetime as dt

from stdnum import luhn

from paydata.oltp.errors import InvalidRequest

BRANDS = ("visa", "mastercard", "amex", "discover", "jcb", "diners", "unionpay", "unknown")
FUNDING_TYPES = ("credit", "debit", "prepaid")

# (brand, lowest prefix, highest prefix) over IIN prefixes of the given length; first match wins,
# so more specific ranges come first.
_IIN_RANGES: tuple[tuple[str, str, str], ...] = (
    ("amex", "34", "34"),
    ("amex", "37", "37"),
    ("diners", "300", "305"),
    ("diners", "36", "36"),
    ("diners", "38", "39"),
    ("jcb", "3528", "3589"),
    ("discover", "6011", "6011"),
    ("discover", "644", "649"),
    ("discover", "65", "65"),
    ("unionpay", "62", "62"),
    ("mastercard", "2221", "2720"),
    ("mastercard", "51", "55"),
    ("visa", "4", "4"),
)

# A simple blended rate: 2.9 %, rounded up to a whole minor unit.
FEE_RATE_PER_MILLE = 29


def detect_brand(digits: str) -> str:
    """The card brand for a digits-only PAN (or IIN prefix), ``"unknown"`` if no range matches."""
    if not isinstance(digits, str) or not digits.isdigit():
        raise InvalidRequest("brand detection needs the card number's digits")
    for brand, low, high in _IIN_RANGES:
        prefix = digits[: len(low)]
        if len(prefix) == len(low) and low <= prefix <= high:
            return brand
    return "unknown"


def check_expiry(exp_month: int, exp_year: int, today: dt.date | None = None) -> None:
    """Raise :class:`InvalidRequest` unless (month, year) is a valid, not yet expired card expiry.

    A card is valid through the last day of its expiry month.
    """
    for name, value in (("exp_month", exp_month), ("exp_year", exp_year)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(f"{name} must be an integer, got {type(value).__name__}")
    if not 1 <= exp_month <= 12:
        raise InvalidRequest(f"exp_month must be 1-12, got {exp_month}")
    if not 2000 <= exp_year <= 2100:
        raise InvalidRequest(f"exp_year must be a four-digit year (2000-2100), got {exp_year}")
    today = today or dt.datetime.now(dt.UTC).date()
    if (exp_year, exp_month) < (today.year, today.month):
        raise InvalidRequest(f"card expired at the end of {exp_year:04d}-{exp_month:02d}")


def processing_fee(amount: int) -> int:
    """The processor's fee in minor units for a charge of ``amount`` minor units (never above it)."""
    return min(amount, -(-amount * FEE_RATE_PER_MILLE // 1000))


def luhn_complete(prefix_digits: str) -> str:
    """``prefix_digits`` plus the Luhn check digit: a syntactically valid test card number."""
    if not isinstance(prefix_digits, str) or not prefix_digits.isdigit():
        raise InvalidRequest("a card number prefix must be digits")
    return prefix_digits + luhn.calc_check_digit(prefix_digits)


def require_positive_amount(amount: int, what: str = "amount") -> int:
    """``amount`` if it is a positive integer number of minor units; :class:`InvalidRequest` otherwise."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidRequest(f"{what} must be an integer number of minor units, got {type(amount).__name__}")
    if amount <= 0:
        raise InvalidRequest(f"{what} must be positive, got {amount}")
    return amount
