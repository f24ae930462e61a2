"""Deterministic pools of synthetic identities per country, built once with faker and reused.

Faker costs tens of microseconds per call, far too slow per row at a million payments. A pool of
names and phone numbers per locale is drawn once per (seed, country) and combined with unique
suffixes per customer, which keeps emails unique and the output deterministic.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

POOL_SIZE = 200
FALLBACK_LOCALE = "en_US"
EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example", "inbox.example")
_PREFERRED = {"US": "en_US", "CA": "en_CA", "CH": "de_CH", "BE": "fr_BE", "IN": "en_IN", "NG": "en_NG"}


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from any parts (stable across processes, unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


@lru_cache(maxsize=1)
def _locales_by_country() -> dict[str, str]:
    from faker.config import AVAILABLE_LOCALES

    found: dict[str, str] = {}
    for locale in sorted(AVAILABLE_LOCALES):
        language, _, country = locale.partition("_")
        if len(country) == 2 and country.isupper():
            found.setdefault(country, locale)
    found.update(_PREFERRED)
    return found


def faker_locale(country_code: str) -> str:
    """The faker locale used for a country (``en_US`` where faker has none)."""
    return _locales_by_country().get(country_code, FALLBACK_LOCALE)


@dataclass(frozen=True)
class IdentityPool:
    locale: str
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    phones: tuple[str, ...]
    companies: tuple[str, ...]


@lru_cache(maxsize=256)
def identity_pool(seed: int, country_code: str) -> IdentityPool:
    """Names, phones and company names for ``country_code``, deterministic under ``seed``."""
    from faker import Faker

    locale = faker_locale(country_code)
    fake = Faker(locale)
    fake.seed_instance(derive_seed("identity-pool", seed, country_code))
    size = POOL_SIZE
    return IdentityPool(
        locale=locale,
        first_names=tuple(fake.first_name() for _ in range(size)),
        last_names=tuple(fake.last_name() for _ in range(size)),
        phones=tuple(fake.phone_number() for _ in range(size)),
        companies=tuple(fake.company() for _ in range(size // 4)),
    )


@lru_cache(maxsize=65536)
def ascii_slug(text: str) -> str:
    """Lower-case ASCII letters and digits of ``text`` (accents dropped); ``""`` if nothing is left."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "", folded)


@dataclass(frozen=True)
class Identity:
    name: str
    email: str
    phone: str


def make_identity(rng: random.Random, pool: IdentityPool, unique_suffix: str) -> Identity:
    """A person from ``pool`` with an email made unique by ``unique_suffix`` (ASCII, no '@')."""
    first = rng.choice(pool.first_names)
    last = rng.choice(pool.last_names)
    local = ".".join(part for part in (ascii_slug(first), ascii_slug(last)) if part) or "customer"
    email = f"{local}.{unique_suffix}@{rng.choice(EMAIL_DOMAINS)}"
    return Identity(name=f"{first} {last}", email=email, phone=rng.choice(pool.phones))
