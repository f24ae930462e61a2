"""Reference data: ISO currencies and countries, synthetic FX rates, risk tiers and merchants.

* Currencies and countries come from ``pycountry`` (ISO 4217 / ISO 3166-1); minor units from CLDR
  via ``babel``. CLDR answers 2 for codes it knows nothing about, so X-codes that no territory uses
  as legal tender (XAU, XDR, XTS, ...) get NULL: ISO 4217 lists them with minor units "N.A.".
* FX rates are **synthetic**: a deterministic random walk per currency from a plausible USD rate.
* Merchants are synthetic (faker company names, weighted ISO 18245 MCCs); their KYC contact is
  encrypted under a per-merchant data key kept in the key store (``paydata.keystore``).

Seeding is idempotent: reference rows are upserts, FX rates are ``ON CONFLICT DO NOTHING`` and a
merchant is skipped when its deterministic KYC email (blind index) already exists.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from paydata.generator.catalog import (
    BASE_USD_RATES,
    MARKET_WEIGHTS,
    MERCHANT_CATEGORIES,
    PAYOUT_SCHEDULES,
    RISK_TIERS,
)
from paydata.generator.config import GeneratorError
from paydata.generator.copy import statement
from paydata.generator.identities import derive_seed, identity_pool, make_identity

FX_BASE_CURRENCY = "USD"
FX_SOURCE = "synthetic"
TRACKED_MERCHANT_ATTRIBUTES = ("risk_tier_code", "mcc", "payout_schedule")


@dataclass(frozen=True)
class MerchantProfile:
    """What traffic generation needs to know about a merchant (no personal data)."""

    merchant_id: int
    mcc: str
    country_code: str
    default_currency_code: str
    risk_tier_code: str = "standard"
    payout_schedule: str = "daily"
    status: str = "active"


@dataclass(frozen=True)
class MerchantSeed:
    """A synthetic merchant before it has an id; ``kyc_*`` fields are plaintext (memory only)."""

    index: int
    legal_name: str
    mcc: str
    country_code: str
    default_currency_code: str
    payout_schedule: str
    risk_tier_code: str
    kyc_name: str
    kyc_email: str
    kyc_phone: str
    created_at: dt.datetime


@lru_cache(maxsize=1)
def _legal_tender() -> frozenset[str]:
    from babel.core import get_global

    current = set()
    for entries in get_global("territory_currencies").values():
        for code, _start, end, tender in entries:
            if end is None and tender:
                current.add(code)
    return frozenset(current)


def minor_units(currency_code: str) -> int | None:
    """ISO 4217 exponent from CLDR; ``None`` for X-codes that are nobody's legal tender (XAU...)."""
    from babel.numbers import get_currency_precision

    if currency_code.startswith("X") and currency_code not in _legal_tender():
        return None
    return get_currency_precision(currency_code)


def currency_rows() -> list[dict]:
    """One row per ISO 4217 currency in ``pycountry``, sorted by code."""
    import pycountry

    return [
        {
            "currency_code": currency.alpha_3,
            "numeric_code": currency.numeric,
            "name": currency.name,
            "minor_units": minor_units(currency.alpha_3),
        }
        for currency in sorted(pycountry.currencies, key=lambda c: c.alpha_3)
    ]


def _default_currency(country_code: str, known: set[str]) -> str | None:
    from babel.core import get_global

    entries = get_global("territory_currencies").get(country_code, [])
    for code, _start, end, tender in entries:
        if end is None and tender and code in known:
            return code
    return None


def country_rows() -> list[dict]:
    """One row per ISO 3166-1 country, with its current CLDR currency (None where there is none)."""
    import pycountry

    known = {currency.alpha_3 for currency in pycountry.currencies}
    return [
        {
            "country_code": country.alpha_2,
            "alpha3_code": country.alpha_3,
            "numeric_code": country.numeric,
            "name": country.name,
            "default_currency_code": _default_currency(country.alpha_2, known),
            "region": None,
        }
        for country in sorted(pycountry.countries, key=lambda c: c.alpha_2)
    ]


def chargeable_currencies() -> dict[str, int]:
    """Currency code -> minor units for every currency that can be charged (known minor units)."""
    return {row["currency_code"]: row["minor_units"] for row in currency_rows() if row["minor_units"] is not None}


def base_rate(currency_code: str) -> float:
    """Units of ``currency_code`` per USD to start the synthetic walk from (deterministic)."""
    if currency_code == FX_BASE_CURRENCY:
        return 1.0
    if currency_code in BASE_USD_RATES:
        return BASE_USD_RATES[currency_code]
    rng = random.Random(derive_seed("base-rate", currency_code))
    return round(math.exp(rng.uniform(math.log(0.5), math.log(2000.0))), 4)


def fx_rate_rows(start: dt.date, days: int, seed: int, currencies: list[str]) -> list[dict]:
    """Synthetic daily USD->currency rates for ``days`` days from ``start`` (random walk, ~0.4%/day).

    Deterministic under ``seed``. Raises GeneratorError for days < 1 or an unknown currency.
    """
    if days < 1:
        raise GeneratorError(f"FX days must be at least 1, got {days}")
    known = chargeable_currencies()
    unknown = sorted(set(currencies) - set(known))
    if unknown:
        raise GeneratorError(f"unknown or non-chargeable currency codes for FX rates: {', '.join(unknown)}")
    rows = []
    for code in sorted(set(currencies) - {FX_BASE_CURRENCY}):
        rng = random.Random(derive_seed("fx", seed, code, start.isoformat()))
        rate = base_rate(code)
        for offset in range(days):
            rate *= math.exp(rng.gauss(0.0, 0.004))
            rows.append({
                "base": FX_BASE_CURRENCY,
                "quote": code,
                "effective_date": start + dt.timedelta(days=offset),
                "rate": Decimal(f"{rate:.10g}"),
                "source": FX_SOURCE,
            })
    return rows


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def generate_merchants(count: int, seed: int, currencies: dict[str, int] | None = None) -> list[MerchantSeed]:
    """``count`` synthetic merchants, deterministic under ``seed`` (index i is always the same merchant).

    Raises GeneratorError for a negative count.
    """
    if count < 0:
        raise GeneratorError(f"merchant count must be >= 0, got {count}")
    currencies = currencies if currencies is not None else chargeable_currencies()
    known = set(currencies)
    countries = {row["country_code"]: row["default_currency_code"] for row in country_rows()}
    markets = {code: weight for code, weight in MARKET_WEIGHTS.items() if countries.get(code) in known}
    categories = {category.mcc: category.weight for category in MERCHANT_CATEGORIES}
    high_risk = {category.mcc for category in MERCHANT_CATEGORIES if category.high_risk}
    epoch = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    merchants = []
    for index in range(count):
        rng = random.Random(derive_seed("merchant", seed, index))
        country = _weighted(rng, markets)
        mcc = _weighted(rng, categories)
        pool = identity_pool(seed, country)
        contact = make_identity(rng, pool, f"kyc{seed % 100000}x{index}")
        if mcc in high_risk:
            tier = rng.choices(["elevated", "high"], weights=[1, 2])[0]
        else:
            tier = rng.choices(["low", "standard", "elevated"], weights=[3, 6, 1])[0]
        merchants.append(MerchantSeed(
            index=index,
            legal_name=f"{rng.choice(pool.companies)} #{index}",
            mcc=mcc,
            country_code=country,
            default_currency_code=countries[country],
            payout_schedule=rng.choices(PAYOUT_SCHEDULES, weights=[6, 3, 1])[0],
            risk_tier_code=tier,
            kyc_name=contact.name,
            kyc_email=contact.email,
            kyc_phone=contact.phone,
            created_at=epoch + dt.timedelta(days=rng.uniform(0, 1500)),
        ))
    return merchants


def seed_reference(
    conn,
    *,
    merchants: int = 200,
    seed: int = 42,
    fx_start: dt.date | None = None,
    fx_days: int = 90,
) -> dict[str, int]:
    """Upsert currencies, countries, risk tiers, FX rates and ``merchants`` merchants; commit.

    Idempotent: a second call with the same arguments changes nothing (merchants are found by the
    blind index of their deterministic KYC email). Needs the KEK and token key in the environment
    (``PAYDATA_KEK_FILE`` / ``PAYDATA_TOKEN_KEY_FILE``). Returns counts of rows written.
    Raises GeneratorError for bad arguments; database errors roll back and propagate.
    """
    if merchants < 0:
        raise GeneratorError(f"merchant count must be >= 0, got {merchants}")
    fx_start = fx_start or dt.date(2026, 1, 1)
    currencies = currency_rows()
    chargeable = {row["currency_code"]: row["minor_units"] for row in currencies if row["minor_units"] is not None}
    counts = {"currencies": 0, "countries": 0, "risk_tiers": 0, "fx_rates": 0, "merchants": 0}
    try:
        with conn.cursor() as cursor:
            for row in currencies:
                cursor.execute(statement("upsert_currency"), row)
                counts["currencies"] += cursor.rowcount
            for row in country_rows():
                cursor.execute(statement("upsert_country"), row)
                counts["countries"] += cursor.rowcount
            for code, description, rank in RISK_TIERS:
                cursor.execute(
                    statement("upsert_risk_tier"),
                    {"risk_tier_code": code, "description": description, "rank": rank},
                )
                counts["risk_tiers"] += cursor.rowcount
            for row in fx_rate_rows(fx_start, fx_days, seed, sorted(chargeable)):
                cursor.execute(statement("insert_fx_rate"), row)
                counts["fx_rates"] += cursor.rowcount
            counts["merchants"] = _insert_merchants(cursor, generate_merchants(merchants, seed, chargeable))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return counts


def _insert_merchants(cursor, seeds: list[MerchantSeed]) -> int:
    from paydata.crypto import blind_index
    from paydata.keystore import default_keystore

    keys = default_keystore()
    if not seeds:
        return 0
    cursor.execute(statement("lock_merchant"))
    indexes = {seed.index: blind_index(seed.kyc_email, domain="email") for seed in seeds}
    cursor.execute(statement("select_merchant_bidx"), {"bidx": list(indexes.values())})
    present = {bytes(row[0]) for row in cursor.fetchall()}
    missing = [seed for seed in seeds if indexes[seed.index] not in present]
    if not missing:
        return 0
    cursor.execute(statement("reserve_merchant_ids"), {"count": len(missing)})
    first_id = cursor.fetchone()[0] - len(missing) + 1
    for offset, seed in enumerate(missing):
        merchant_id = first_id + offset
        # The key row commits in the key store before this transaction: a failure in between
        # leaves an unused key, never a merchant without its key.
        key = keys.create("merchant", merchant_id, created_at=seed.created_at)
        cipher = key.cipher()

        def enc(value: str, column: str, cipher=cipher, merchant_id=merchant_id) -> bytes:
            return cipher.encrypt(value, table="merchant", column=column, pk=merchant_id)

        cursor.execute(statement("insert_merchant"), {
            "merchant_id": merchant_id,
            "legal_name": seed.legal_name,
            "mcc": seed.mcc,
            "country_code": seed.country_code,
            "default_currency_code": seed.default_currency_code,
            "payout_schedule": seed.payout_schedule,
            "risk_tier_code": seed.risk_tier_code,
            "status": "active",
            "name_enc": enc(seed.kyc_name, "kyc_contact_name"),
            "email_enc": enc(seed.kyc_email, "kyc_contact_email"),
            "phone_enc": enc(seed.kyc_phone, "kyc_contact_phone"),
            "email_bidx": indexes[seed.index],
            "created_at": seed.created_at,
        })
    return len(missing)


def load_merchant_profiles(conn) -> list[MerchantProfile]:
    """Every merchant of the reference database, in id order (read-only)."""
    with conn.cursor() as cursor:
        cursor.execute(statement("select_merchants"))
        rows = cursor.fetchall()
    conn.rollback()
    return [MerchantProfile(*row) for row in rows]


def load_chargeable_currencies(conn) -> dict[str, int]:
    """Currency code -> minor units for the chargeable currencies of the reference database."""
    with conn.cursor() as cursor:
        cursor.execute(statement("select_chargeable_currencies"))
        rows = cursor.fetchall()
    conn.rollback()
    return dict(rows)


@dataclass(frozen=True)
class MerchantChange:
    merchant_id: int
    attribute: str
    old_value: str
    new_value: str


def apply_merchant_changes(conn, count: int, seed: int) -> list[MerchantChange]:
    """Apply ``count`` attribute changes (risk tier, MCC or payout schedule), one transaction each.

    Each change is a real UPDATE of one tracked attribute to a different value, so the CDC stream
    carries one version per change for the warehouse's SCD2 history. Deterministic under ``seed``
    for a given set of merchant ids. Raises GeneratorError for a negative count or when there are
    no merchants.
    """
    if count < 0:
        raise GeneratorError(f"change count must be >= 0, got {count}")
    with conn.cursor() as cursor:
        cursor.execute(statement("select_merchant_ids"))
        merchant_ids = [row[0] for row in cursor.fetchall()]
    conn.rollback()
    if count and not merchant_ids:
        raise GeneratorError("no merchants to change: run seed-reference first")
    rng = random.Random(derive_seed("merchant-changes", seed))
    options = {
        "risk_tier_code": [code for code, _description, _rank in RISK_TIERS],
        "mcc": [category.mcc for category in MERCHANT_CATEGORIES],
        "payout_schedule": list(PAYOUT_SCHEDULES),
    }
    changes = []
    for _ in range(count):
        merchant_id = rng.choice(merchant_ids)
        attribute = rng.choice(TRACKED_MERCHANT_ATTRIBUTES)
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement("select_merchant_for_change"), {"merchant_id": merchant_id})
                _id, mcc, tier, schedule = cursor.fetchone()
                current = {"risk_tier_code": tier, "mcc": mcc, "payout_schedule": schedule}[attribute]
                new_value = rng.choice([value for value in options[attribute] if value != current])
                cursor.execute(
                    statement(f"update_merchant_{attribute.removesuffix('_code')}"),
                    {"merchant_id": merchant_id, "value": new_value},
                )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        changes.append(MerchantChange(merchant_id, attribute, current, new_value))
    return changes
