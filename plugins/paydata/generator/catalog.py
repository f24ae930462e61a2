"""Static catalogues the generator draws from: merchant category codes, markets and price levels.

Everything here is either a standard's code list (the MCCs are ISO 18245 merchant category codes,
as published in the card networks' MCC lists) or a synthetic modelling choice (weights, typical
amounts, rates), labelled as such. ISO 3166 / 4217 data itself is never typed here: it comes from
``pycountry`` and CLDR (``babel``) in :mod:`paydata.generator.reference`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MerchantCategory:
    mcc: str
    description: str
    weight: float  # share of merchants (synthetic)
    median_usd: float  # typical ticket (synthetic), lognormal median
    sigma: float  # lognormal spread of the ticket size (synthetic)
    high_risk: bool  # card-network high-risk category


# ISO 18245 codes; weights and ticket sizes are synthetic modelling choices.
MERCHANT_CATEGORIES: tuple[MerchantCategory, ...] = (
    MerchantCategory("5411", "Grocery stores and supermarkets", 14, 45.0, 0.8, False),
    MerchantCategory("5812", "Eating places and restaurants", 14, 28.0, 0.7, False),
    MerchantCategory("5814", "Fast food restaurants", 10, 11.0, 0.5, False),
    MerchantCategory("5999", "Miscellaneous and specialty retail", 10, 40.0, 1.0, False),
    MerchantCategory("5651", "Family clothing stores", 8, 65.0, 0.8, False),
    MerchantCategory("5732", "Electronics stores", 6, 180.0, 1.0, False),
    MerchantCategory("5817", "Digital goods: applications and games", 6, 9.0, 0.9, False),
    MerchantCategory("4121", "Taxicabs and limousines", 5, 22.0, 0.6, False),
    MerchantCategory("5912", "Drug stores and pharmacies", 5, 30.0, 0.7, False),
    MerchantCategory("5541", "Service stations", 5, 50.0, 0.5, False),
    MerchantCategory("4814", "Telecommunication services", 4, 45.0, 0.6, False),
    MerchantCategory("7011", "Hotels and lodging", 4, 210.0, 0.8, False),
    MerchantCategory("4511", "Airlines", 3, 320.0, 0.8, False),
    MerchantCategory("5942", "Book stores", 3, 25.0, 0.6, False),
    MerchantCategory("8062", "Hospitals", 2, 250.0, 1.1, False),
    MerchantCategory("4829", "Money transfer", 2, 250.0, 1.2, True),
    MerchantCategory("7995", "Betting and gambling", 2, 60.0, 1.3, True),
    MerchantCategory("5967", "Direct marketing: inbound teleservices", 1, 70.0, 1.0, True),
    MerchantCategory("6051", "Quasi-cash: money orders and crypto", 1, 300.0, 1.3, True),
)
CATEGORY_BY_MCC = {category.mcc: category for category in MERCHANT_CATEGORIES}

# (code, description, rank): higher rank = riskier.
RISK_TIERS: tuple[tuple[str, str, int], ...] = (
    ("low", "Established merchant, low chargeback history", 0),
    ("standard", "Default tier for new merchants", 1),
    ("elevated", "Elevated chargeback or fraud rate; reserve may apply", 2),
    ("high", "High-risk category or history; rolling reserve and manual review", 3),
)
PAYOUT_SCHEDULES = ("daily", "weekly", "monthly")

# Where merchants and most customers are (synthetic weights over real ISO 3166 codes).
MARKET_WEIGHTS: dict[str, float] = {
    "US": 30, "GB": 9, "DE": 7, "FR": 6, "CA": 4, "AU": 3, "NL": 3, "ES": 3, "IT": 3, "JP": 4,
    "BR": 3, "MX": 2, "IN": 3, "SG": 1.5, "SE": 1.5, "PL": 1.5, "IE": 1, "CH": 1, "KW": 0.5,
    "AE": 1, "ZA": 1, "NG": 1, "KR": 1.5, "NZ": 0.5,
}

# Price level relative to the US (synthetic, roughly purchasing-power shaped).
PRICE_LEVEL: dict[str, float] = {
    "US": 1.0, "CH": 1.2, "GB": 0.9, "DE": 0.85, "FR": 0.85, "JP": 0.7, "IN": 0.3, "BR": 0.5,
    "MX": 0.5, "NG": 0.3, "ZA": 0.45, "PL": 0.55,
}

# Units of the currency per 1 USD: plausible starting points for the synthetic random walk.
# Currencies not listed start from a deterministic pseudo-random rate (see reference.base_rate).
BASE_USD_RATES: dict[str, float] = {
    "EUR": 0.92, "GBP": 0.79, "JPY": 150.0, "CHF": 0.88, "CAD": 1.36, "AUD": 1.52, "NZD": 1.65,
    "SEK": 10.5, "NOK": 10.7, "DKK": 6.9, "PLN": 4.0, "CZK": 23.0, "HUF": 360.0, "RON": 4.6,
    "TRY": 32.0, "INR": 83.0, "CNY": 7.2, "HKD": 7.8, "SGD": 1.35, "KRW": 1330.0, "TWD": 31.5,
    "THB": 36.0, "MYR": 4.7, "IDR": 15700.0, "PHP": 56.0, "VND": 24500.0, "BRL": 5.0, "MXN": 17.0,
    "ARS": 850.0, "CLP": 940.0, "COP": 3950.0, "PEN": 3.7, "ZAR": 18.8, "NGN": 1400.0, "KES": 140.0,
    "EGP": 47.0, "AED": 3.67, "SAR": 3.75, "ILS": 3.7, "KWD": 0.31, "BHD": 0.376, "OMR": 0.385,
    "JOD": 0.709, "QAR": 3.64, "ISK": 138.0,
}

FAILURE_CODES: dict[str, tuple[float, str]] = {
    "card_declined": (40, "Your card was declined."),
    "insufficient_funds": (25, "Your card has insufficient funds."),
    "do_not_honor": (12, "The card issuer declined the payment (do not honor)."),
    "expired_card": (8, "Your card has expired."),
    "incorrect_cvc": (10, "Your card's security code is incorrect."),
    "fraudulent": (5, "The payment was declined as suspected fraud."),
}
# Card testers mostly hit CVC and issuer declines.
CARD_TESTING_FAILURES: dict[str, float] = {
    "incorrect_cvc": 35, "card_declined": 30, "do_not_honor": 15, "expired_card": 10, "fraudulent": 10,
}

# (brand, weight, BIN prefixes, PAN length)
CARD_BRANDS: tuple[tuple[str, float, tuple[str, ...], int], ...] = (
    ("visa", 52, ("4",), 16),
    ("mastercard", 32, ("51", "52", "53", "54", "55", "2221", "2720"), 16),
    ("amex", 8, ("34", "37"), 15),
    ("discover", 3, ("6011", "65"), 16),
    ("jcb", 2, ("3528", "3589"), 16),
    ("unionpay", 3, ("62",), 16),
)
FUNDING_WEIGHTS = {"credit": 55, "debit": 40, "prepaid": 5}

# Processor pricing (synthetic): percentage plus fixed fee in USD, converted per currency.
FEE_PERCENT = 0.029
FEE_FIXED_USD = 0.30
DISPUTE_FEE_USD = 15.0
