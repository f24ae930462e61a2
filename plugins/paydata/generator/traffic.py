"""Synthetic payment traffic, generated in chunks and deterministic under the config's seed.

A chunk is self-contained: its customers, cards, intents, charges, refunds, disputes and ledger
rows only reference each other (and merchants), with ids local to the chunk. The loader reserves
id blocks and shifts them (:meth:`TrafficChunk.rows`, :func:`paydata.generator.encode.encode_chunk`),
so generation never needs the database, and the same config yields the same rows whatever ids the
database hands out.

Card numbers exist only inside :func:`_new_card`: a Luhn-valid PAN is drawn, fingerprinted with
the keyed :func:`paydata.crypto.card_fingerprint`, and dropped. Only token, last4, brand, funding,
expiry, BIN country and fingerprint are kept. Personal data stays plaintext in memory and is
encrypted per customer data key when the COPY buffers are built.

Payouts need every chunk's ledger, so :class:`PayoutAccumulator` collects net balances per
merchant, currency and payout period and emits payouts (with their ledger rows) at the end.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from paydata.generator.catalog import (
    CARD_BRANDS,
    CARD_TESTING_FAILURES,
    CATEGORY_BY_MCC,
    DISPUTE_FEE_USD,
    FAILURE_CODES,
    FEE_FIXED_USD,
    FEE_PERCENT,
    FUNDING_WEIGHTS,
    MARKET_WEIGHTS,
    PRICE_LEVEL,
)
from paydata.generator.config import GeneratorError, TrafficConfig
from paydata.generator.fraud import FRAUD, FraudModel, draw_offset_seconds
from paydata.generator.identities import Identity, derive_seed, identity_pool, make_identity
from paydata.generator.reference import MerchantProfile, base_rate
from paydata.generator.shift import card_testing_targets

PanSink = Callable[[str], None]

AVAILABLE_AFTER = dt.timedelta(days=2)
PAYOUT_ARRIVAL = dt.timedelta(days=2)

DEVICE_TYPES = {"mobile": 55, "desktop": 38, "tablet": 7}
OS_BY_TYPE = {
    "mobile": ("iOS 17", "iOS 18", "Android 13", "Android 14"),
    "desktop": ("Windows 11", "Windows 10", "macOS 14", "Ubuntu 24.04"),
    "tablet": ("iPadOS 17", "Android 14"),
}
BROWSERS = ("Chrome", "Safari", "Firefox", "Edge", "Samsung Internet")
SCREENS = {"mobile": ("390x844", "412x915", "360x800"), "desktop": ("1920x1080", "1536x864", "2560x1440"),
           "tablet": ("820x1180", "800x1280")}

CUSTOMER_COLUMNS = ("customer_id", "merchant_id", "email_enc", "name_enc", "phone_enc", "email_bidx",
                    "country_code", "created_at", "updated_at")
DATA_KEY_COLUMNS = ("customer_id", "key_id", "wrapped_key", "created_at")
PAYMENT_METHOD_COLUMNS = ("payment_method_id", "customer_id", "token", "brand", "funding", "last4",
                          "exp_month", "exp_year", "bin_country_code", "fingerprint", "created_at")
INTENT_COLUMNS = ("payment_intent_id", "merchant_id", "customer_id", "amount", "currency_code", "status",
                  "created_at", "updated_at")
CHARGE_COLUMNS = ("charge_id", "payment_intent_id", "payment_method_id", "amount", "currency_code", "status",
                  "failure_code", "failure_message", "captured", "ip_address", "device_id", "session_id",
                  "created_at", "updated_at")
REFUND_COLUMNS = ("refund_id", "charge_id", "amount", "status", "reason", "created_at", "updated_at")
DISPUTE_COLUMNS = ("dispute_id", "charge_id", "amount", "reason", "status", "opened_at", "closed_at",
                   "updated_at")
PAYOUT_COLUMNS = ("payout_id", "merchant_id", "amount", "currency_code", "status", "arrival_date",
                  "created_at", "updated_at")
LEDGER_COLUMNS = ("balance_transaction_id", "merchant_id", "type", "source_id", "amount", "fee", "net",
                  "currency_code", "created_at", "available_on")
STATUS_STEP_COLUMNS = ("charge_id", "step", "status")

# OLTP load order: every table after the ones it references. The customers' data keys
# ("customer_data_key" rows) go to the key store, not to OLTP.
TABLE_ORDER = ("customer", "payment_method", "payment_intent", "charge", "refund",
               "dispute", "payout", "balance_transaction")
KEY_TABLE = "customer_data_key"
ID_COLUMNS = {
    "customer": "customer_id", "payment_method": "payment_method_id", "payment_intent": "payment_intent_id",
    "charge": "charge_id", "refund": "refund_id", "dispute": "dispute_id", "payout": "payout_id",
    "balance_transaction": "balance_transaction_id",
}
COLUMNS = {
    "customer": CUSTOMER_COLUMNS, "customer_data_key": DATA_KEY_COLUMNS,
    "payment_method": PAYMENT_METHOD_COLUMNS, "payment_intent": INTENT_COLUMNS, "charge": CHARGE_COLUMNS,
    "refund": REFUND_COLUMNS, "dispute": DISPUTE_COLUMNS, "payout": PAYOUT_COLUMNS,
    "balance_transaction": LEDGER_COLUMNS,
}


class Customer(NamedTuple):
    local_id: int
    merchant_id: int
    identity: Identity
    country_code: str
    created_at: dt.datetime
    is_fraud: bool


class Card(NamedTuple):
    local_id: int
    customer_local: int
    token: str
    brand: str
    funding: str
    last4: str
    exp_month: int
    exp_year: int
    bin_country_code: str
    fingerprint: str
    created_at: dt.datetime


class Charge(NamedTuple):
    """One intent and its single charge (same local id)."""

    local_id: int
    merchant_id: int
    customer_local: int
    card_local: int
    amount: int
    currency_code: str
    status: str
    failure_code: str | None
    failure_message: str | None
    ip_address: str
    device_id: str
    session_id: str
    created_at: dt.datetime
    fraud_pattern: str  # "none", "stolen_card", "card_testing" (or "account_takeover" when shifted): ground truth


class Refund(NamedTuple):
    local_id: int
    charge_local: int
    amount: int
    status: str
    reason: str
    created_at: dt.datetime


class Dispute(NamedTuple):
    local_id: int
    charge_local: int
    amount: int
    reason: str
    status: str
    opened_at: dt.datetime
    closed_at: dt.datetime | None


class LedgerEntry(NamedTuple):
    merchant_id: int
    type: str
    source_table: str | None  # table whose chunk-local id ``source_local`` is, or None
    source_local: int | None
    amount: int
    fee: int
    currency_code: str
    created_at: dt.datetime
    available_on: dt.datetime


@dataclass(frozen=True)
class Device:
    device_id: str
    device_type: str
    os: str
    browser: str
    screen: str


@dataclass
class TrafficChunk:
    """The rows of one chunk with chunk-local ids, plus what the landing files need."""

    batch_key: str
    index: int
    customers: list[Customer] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    charges: list[Charge] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    disputes: list[Dispute] = field(default_factory=list)
    ledger: list[LedgerEntry] = field(default_factory=list)
    status_steps: list[tuple[int, int, str]] = field(default_factory=list)
    devices: dict[str, Device] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Rows per table (identity-bearing tables only), for reserving id blocks."""
        return {
            "customer": len(self.customers), "payment_method": len(self.cards),
            "payment_intent": len(self.charges), "charge": len(self.charges),
            "refund": len(self.refunds), "dispute": len(self.disputes), "payout": 0,
            "balance_transaction": len(self.ledger),
        }

    def rows(self, first_ids: dict[str, int], encrypt: bool = True) -> dict[str, list[tuple]]:
        """Rows per table with ids shifted to start at ``first_ids[table]``.

        With ``encrypt`` (the default) personal data is encrypted under a fresh data key per
        customer (needs the KEK and token key in the environment) and ``customer_data_key`` rows
        are included; without it the customer rows carry ``None`` for every personal field
        (deterministic, for comparisons).
        """
        base = {table: first_ids.get(table, 1) for table in ID_COLUMNS}
        customer_base, card_base = base["customer"], base["payment_method"]
        intent_base, charge_base = base["payment_intent"], base["charge"]
        customers, data_keys = [], []
        if encrypt:
            from paydata.crypto import blind_index, new_owner_key
        for customer in self.customers:
            customer_id = customer_base + customer.local_id
            if encrypt:
                key = new_owner_key()
                cipher = key.cipher()
                identity = customer.identity
                email_enc = cipher.encrypt(identity.email, table="customer", column="email", pk=customer_id)
                name_enc = cipher.encrypt(identity.name, table="customer", column="name", pk=customer_id)
                phone_enc = cipher.encrypt(identity.phone, table="customer", column="phone", pk=customer_id)
                bidx = blind_index(identity.email, domain="email")
                data_keys.append((customer_id, key.key_id, key.wrapped, customer.created_at))
            else:
                email_enc = name_enc = phone_enc = bidx = None
            customers.append((customer_id, customer.merchant_id, email_enc, name_enc, phone_enc, bidx,
                              customer.country_code, customer.created_at, customer.created_at))
        cards = [
            (card_base + c.local_id, customer_base + c.customer_local, c.token, c.brand, c.funding, c.last4,
             c.exp_month, c.exp_year, c.bin_country_code, c.fingerprint, c.created_at)
            for c in self.cards
        ]
        intents, charges = [], []
        for c in self.charges:
            intent_status = {"succeeded": "succeeded", "failed": "requires_payment_method"}.get(
                c.status, "processing")
            intents.append((intent_base + c.local_id, c.merchant_id, customer_base + c.customer_local, c.amount,
                            c.currency_code, intent_status, c.created_at, c.created_at))
            charges.append((charge_base + c.local_id, intent_base + c.local_id, card_base + c.card_local,
                             c.amount, c.currency_code, c.status, c.failure_code, c.failure_message,
                             c.status == "succeeded", c.ip_address, c.device_id, c.session_id, c.created_at,
                             c.created_at))
        refunds = [(base["refund"] + r.local_id, charge_base + r.charge_local, r.amount, r.status, r.reason,
                    r.created_at, r.created_at) for r in self.refunds]
        disputes = [(base["dispute"] + d.local_id, charge_base + d.charge_local, d.amount, d.reason, d.status,
                     d.opened_at, d.closed_at, d.closed_at or d.opened_at) for d in self.disputes]
        ledger = []
        for offset, entry in enumerate(self.ledger):
            source_id = None if entry.source_table is None else base[entry.source_table] + entry.source_local
            ledger.append((base["balance_transaction"] + offset, entry.merchant_id, entry.type, source_id,
                           entry.amount, entry.fee, entry.amount - entry.fee, entry.currency_code,
                           entry.created_at, entry.available_on))
        steps = [(charge_base + local, step, status) for local, step, status in self.status_steps]
        return {
            "customer": customers, "customer_data_key": data_keys, "payment_method": cards,
            "payment_intent": intents, "charge": charges, "refund": refunds, "dispute": disputes,
            "balance_transaction": ledger, "charge_status_step": steps,
        }


class WeightedChoice:
    """A fixed weighted choice with its cumulative weights computed once.

    ``pick(rng)`` consumes the same random draw and returns the same value as
    ``rng.choices(values, weights)[0]``, without rebuilding the cumulative weights on every call.
    """

    __slots__ = ("values", "cum_weights")

    def __init__(self, weights: dict | list[float], values: list | None = None) -> None:
        if isinstance(weights, dict):
            values, weights = list(weights), list(weights.values())
        self.values = list(range(len(weights))) if values is None else list(values)
        self.cum_weights = list(itertools.accumulate(weights))

    def pick(self, rng: random.Random):
        return rng.choices(self.values, cum_weights=self.cum_weights)[0]


_DEVICE_TYPE_CHOICE = WeightedChoice(DEVICE_TYPES)
_FUNDING_CHOICE = WeightedChoice(FUNDING_WEIGHTS)
_FAILURE_CHOICE = WeightedChoice({code: weight for code, (weight, _m) in FAILURE_CODES.items()})
_CARD_TESTING_FAILURE_CHOICE = WeightedChoice(CARD_TESTING_FAILURES)
_BRAND_CHOICE = WeightedChoice([weight for _b, weight, _p, _l in CARD_BRANDS],
                               values=[(brand, prefixes, length) for brand, _w, prefixes, length in CARD_BRANDS])
_REFUND_REASON_CHOICE = WeightedChoice({"requested_by_customer": 9, "duplicate": 1})
_DIGITS = "0123456789"
_LUHN_DOUBLED = tuple((2 * digit) - 9 if digit > 4 else 2 * digit for digit in range(10))


def luhn_check_digit(body: str) -> str:
    """The Luhn check digit that completes the decimal string ``body`` (as ``stdnum.luhn.calc_check_digit``)."""
    total = 0
    doubled = _LUHN_DOUBLED
    for position, char in enumerate(reversed(body)):
        digit = ord(char) - 48
        total += doubled[digit] if position % 2 == 0 else digit
    return str(-total % 10)


_RESERVED_FIRST_OCTETS = frozenset({0, 10, 100, 127, 169, 172, 192, 198, 203})


class IpPlan:
    """Deterministic IPv4 /16 prefixes per country, disjoint between countries (synthetic geo-IP).

    :meth:`country_of` maps an address back to its country, which is how the landing sessions'
    ``geo`` is filled and how a model can compare IP country with BIN country.
    """

    PREFIXES_PER_COUNTRY = 4

    def __init__(self, countries: list[str]) -> None:
        rng = random.Random(derive_seed("ip-plan"))
        taken: dict[tuple[int, int], str] = {}
        self._prefixes: dict[str, list[tuple[int, int]]] = {}
        for country in sorted(countries):
            prefixes = []
            while len(prefixes) < self.PREFIXES_PER_COUNTRY:
                prefix = (rng.randint(1, 223), rng.randint(0, 255))
                if prefix[0] in _RESERVED_FIRST_OCTETS or prefix in taken:
                    continue
                taken[prefix] = country
                prefixes.append(prefix)
            self._prefixes[country] = prefixes
        self._country_by_prefix = taken

    def address(self, rng: random.Random, country: str) -> str:
        first, second = rng.choice(self._prefixes[country])
        return f"{first}.{second}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"

    def country_of(self, address: str) -> str | None:
        first, second, _rest = address.split(".", 2)
        return self._country_by_prefix.get((int(first), int(second)))


def _countries() -> list[str]:
    import pycountry

    return sorted(country.alpha_2 for country in pycountry.countries)


class TrafficGenerator:
    """Generates the chunks of one :class:`TrafficConfig` for a set of merchants and currencies.

    ``currencies`` maps chargeable currency codes to minor units (OLTP ``currency_ref``). Raises
    GeneratorError if there are no merchants, or a merchant's currency or country is unknown.
    ``pan_sink``, if given, receives every generated PAN (for verification that none is stored).
    """

    def __init__(self, config: TrafficConfig, merchants: list[MerchantProfile], currencies: dict[str, int],
                 *, fraud: FraudModel = FRAUD, pan_sink: PanSink | None = None) -> None:
        if not merchants:
            raise GeneratorError("no merchants to generate traffic for: seed the reference data first")
        if not currencies:
            raise GeneratorError("no chargeable currencies: sync currency_ref first")
        countries = _countries()
        known_countries = set(countries)
        for merchant in merchants:
            if merchant.default_currency_code not in currencies:
                raise GeneratorError(
                    f"merchant {merchant.merchant_id} has unknown or non-chargeable currency "
                    f"{merchant.default_currency_code!r}; known: {len(currencies)} currencies"
                )
            if merchant.country_code not in known_countries:
                raise GeneratorError(f"merchant {merchant.merchant_id} has unknown country {merchant.country_code!r}")
            if merchant.mcc not in CATEGORY_BY_MCC:
                raise GeneratorError(f"merchant {merchant.merchant_id} has an MCC outside the catalogue: {merchant.mcc!r}")
        for code, units in currencies.items():
            if not isinstance(units, int) or not 0 <= units <= 4:
                raise GeneratorError(f"currency {code!r} has invalid minor units {units!r}")
        self.config = config
        self.fraud = fraud
        self.currencies = dict(currencies)
        self.pan_sink = pan_sink
        self.merchants = [m for m in merchants if m.status == "active"] or list(merchants)
        self.ip_plan = IpPlan(countries)
        self._country_currency = _country_currencies()
        # Merchant sizes follow a long tail: a few merchants carry most of the traffic.
        size_rng = random.Random(derive_seed("merchant-size", config.seed))
        self._merchant_weights = [size_rng.paretovariate(1.2) for _ in self.merchants]
        self._fraud_weights = [
            weight * (fraud.high_risk_merchant_boost if CATEGORY_BY_MCC[m.mcc].high_risk else 1.0)
            for weight, m in zip(self._merchant_weights, self.merchants, strict=True)
        ]
        self._markets = {code: w for code, w in MARKET_WEIGHTS.items() if code in known_countries}
        self._market_choice = WeightedChoice(self._markets)
        self._merchant_choice = WeightedChoice(self._merchant_weights, values=self.merchants)
        self._fraud_merchant_choice = WeightedChoice(self._fraud_weights, values=self.merchants)
        self.shift = config.shift
        self._card_testing_choice = self._fraud_merchant_choice
        if self.shift.covariate:
            targets = card_testing_targets(self.merchants, self.shift)
            self._card_testing_choice = WeightedChoice([1.0] * len(targets), values=targets)
        self._phase = (config.start.astimezone(dt.UTC) - config.start.astimezone(dt.UTC).replace(
            hour=0, minute=0, second=0, microsecond=0)).total_seconds()
        self._span = config.days * 86400.0

    def chunks(self) -> Iterator[TrafficChunk]:
        """Every chunk of the batch, in order; each is generated only when requested."""
        for index in range(self.config.chunk_count):
            yield self.chunk(index)

    def chunk(self, index: int) -> TrafficChunk:
        """Chunk ``index`` alone (deterministic: it does not depend on the other chunks)."""
        config = self.config
        if not 0 <= index < config.chunk_count:
            raise GeneratorError(f"chunk index {index} outside 0..{config.chunk_count - 1}")
        payments = min(config.chunk_size, config.payments - index * config.chunk_size)
        return _ChunkBuilder(self, index, payments).build()

    def landing_ip_country(self, address: str) -> str | None:
        return self.ip_plan.country_of(address)


def _country_currencies() -> dict[str, str | None]:
    from paydata.generator.reference import country_rows

    return {row["country_code"]: row["default_currency_code"] for row in country_rows()}


class _ChunkBuilder:
    def __init__(self, generator: TrafficGenerator, index: int, payments: int) -> None:
        self.g = generator
        self.config = generator.config
        self.fraud = generator.fraud
        self.rng = random.Random(derive_seed("chunk", self.config.batch_key, index))
        self.payments = payments
        self.chunk = TrafficChunk(batch_key=self.config.batch_key, index=index)
        self.customer_devices: dict[int, list[str]] = {}
        self.customer_cards: dict[int, list[int]] = {}
        self.taken_over: set[int] = set()  # account takeover (a shifted world only)
        from paydata.crypto import default_tokeniser

        self.tokeniser = default_tokeniser()

    # -- helpers ---------------------------------------------------------------------------------
    def _time(self, *, unusual_hour: bool) -> dt.datetime:
        offset = draw_offset_seconds(self.rng, self.g._span, self.g._phase, unusual_hour=unusual_hour)
        return self.config.start + dt.timedelta(seconds=round(offset, 3))

    def _device(self) -> str:
        rng = self.rng
        kind = _DEVICE_TYPE_CHOICE.pick(rng)
        device = Device(f"dev_{rng.getrandbits(64):016x}", kind, rng.choice(OS_BY_TYPE[kind]),
                        rng.choice(BROWSERS), rng.choice(SCREENS[kind]))
        self.chunk.devices[device.device_id] = device
        return device.device_id

    def _other_country(self, country: str) -> str:
        while True:
            candidate = self.g._market_choice.pick(self.rng)
            if candidate != country:
                return candidate

    def _new_customer(self, merchant: MerchantProfile, *, is_fraud: bool) -> Customer:
        rng = self.rng
        chunk = self.chunk
        if rng.random() < self.config.cross_border_rate:
            country = self._other_country(merchant.country_code)
        else:
            country = merchant.country_code
        local_id = len(chunk.customers)
        identity = make_identity(rng, identity_pool(self.config.seed, country),
                                 f"{self.config.batch_key[:8]}{chunk.index:x}{local_id:x}")
        created = self.config.start - dt.timedelta(days=rng.uniform(0, 400))
        customer = Customer(local_id, merchant.merchant_id, identity, country, created, is_fraud)
        chunk.customers.append(customer)
        self.customer_devices[local_id] = [self._device() for _ in range(1 if rng.random() < 0.7 else 2)]
        card_count = 1 if rng.random() < 0.8 else (2 if rng.random() < 0.85 else 3)
        self.customer_cards[local_id] = [self._new_card(customer) for _ in range(card_count)]
        return customer

    def _new_card(self, customer: Customer) -> int:
        rng = self.rng
        chunk = self.chunk
        brand, prefixes, length = _BRAND_CHOICE.pick(rng)
        choice = rng.choice
        body = choice(prefixes)
        body += "".join([choice(_DIGITS) for _ in range(length - 1 - len(body))])
        pan = body + luhn_check_digit(body)
        if self.g.pan_sink is not None:
            self.g.pan_sink(pan)
        fingerprint = self.tokeniser.card_fingerprint(pan)
        last4 = pan[-4:]
        del pan
        if customer.is_fraud and rng.random() < self.fraud.geo_mismatch_rate:
            bin_country = self._other_country(customer.country_code)
        elif rng.random() < self.fraud.legit_geo_mismatch_rate:
            bin_country = self._other_country(customer.country_code)
        else:
            bin_country = customer.country_code
        local_id = len(chunk.cards)
        token = self.tokeniser.tokenise(f"{chunk.batch_key}/{chunk.index}/{local_id}", domain="card_token")
        chunk.cards.append(Card(
            local_id, customer.local_id, token, brand, _FUNDING_CHOICE.pick(rng), last4,
            rng.randint(1, 12), self.config.start.year + rng.randint(0, 5), bin_country, fingerprint,
            customer.created_at + dt.timedelta(minutes=rng.uniform(1, 600)),
        ))
        return local_id

    def _currency(self, merchant: MerchantProfile, customer: Customer) -> str:
        if customer.country_code != merchant.country_code and self.rng.random() < 0.5:
            own = self.g._country_currency.get(customer.country_code)
            if own in self.g.currencies:
                return own
        return merchant.default_currency_code

    def _minor(self, usd: float, currency: str) -> int:
        return max(1, round(usd * base_rate(currency) * 10 ** self.g.currencies[currency]))

    def _amount(self, merchant: MerchantProfile, currency: str, *, multiplier: float = 1.0) -> int:
        category = CATEGORY_BY_MCC[merchant.mcc]
        usd = self.rng.lognormvariate(math.log(category.median_usd), category.sigma)
        usd *= PRICE_LEVEL.get(merchant.country_code, 0.8) * multiplier
        if self.g.shift.covariate:
            usd *= self.g.shift.amount_growth
        return self._minor(min(max(usd, 0.5), 25_000.0), currency)

    def _fee(self, amount: int, currency: str) -> int:
        return min(amount, round(amount * FEE_PERCENT) + self._minor(FEE_FIXED_USD, currency))

    # -- traffic ---------------------------------------------------------------------------------
    def build(self) -> TrafficChunk:
        rng = self.rng
        config = self.config
        g = self.g
        remaining = self.payments
        testing = min(remaining, round(self.payments * config.card_testing_rate))
        while testing >= self.fraud.burst_min:
            size = min(testing, rng.randint(self.fraud.burst_min, self.fraud.burst_max))
            self._card_testing_burst(size)
            testing -= size
            remaining -= size
        if remaining <= 0:
            return self.chunk
        customer_count = max(1, round(remaining * config.customers_per_payment))
        customers = []
        activity = []
        for _ in range(customer_count):
            is_fraud = rng.random() < config.fraud_customer_rate
            merchant = (g._fraud_merchant_choice if is_fraud else g._merchant_choice).pick(rng)
            customers.append((self._new_customer(merchant, is_fraud=is_fraud), merchant))
            if g.shift.new_fraud_pattern and not is_fraud and rng.random() < g.shift.takeover_customer_rate:
                self.taken_over.add(customers[-1][0].local_id)
            activity.append(rng.lognormvariate(0.0, 0.8))
        # Every customer pays at least once; the rest follows the activity weights.
        assignments = list(range(customer_count))[:remaining]
        assignments += rng.choices(range(customer_count), activity, k=remaining - len(assignments))
        last_fraud_time: dict[int, dt.datetime] = {}
        for customer_index in sorted(assignments):
            customer, merchant = customers[customer_index]
            self._payment(customer, merchant, last_fraud_time)
        return self.chunk

    def _payment(self, customer: Customer, merchant: MerchantProfile,
                 last_fraud_time: dict[int, dt.datetime]) -> None:
        rng = self.rng
        fraud = self.fraud
        is_fraud = customer.is_fraud
        if is_fraud and customer.local_id in last_fraud_time:
            created = last_fraud_time[customer.local_id] + dt.timedelta(
                minutes=rng.uniform(*fraud.velocity_gap_minutes))
        else:
            created = self._time(unusual_hour=is_fraud and rng.random() < fraud.unusual_hour_rate)
        if is_fraud:
            last_fraud_time[customer.local_id] = created
        card = rng.choice(self.customer_cards[customer.local_id])
        new_device_rate = fraud.new_device_rate if is_fraud else fraud.legit_new_device_rate
        if rng.random() < new_device_rate:
            device = self._device()
        else:
            device = rng.choice(self.customer_devices[customer.local_id])
        if is_fraud and rng.random() < fraud.geo_mismatch_rate:
            ip_country = self._other_country(self.chunk.cards[card].bin_country_code)
        else:
            ip_country = customer.country_code
        currency = self._currency(merchant, customer)
        amount = self._amount(merchant, currency, multiplier=fraud.amount_multiplier if is_fraud else 1.0)
        failure_rate = fraud.fraud_failure_rate if is_fraud else fraud.legit_failure_rate
        roll = rng.random()
        if roll < failure_rate:
            status = "failed"
            code = _FAILURE_CHOICE.pick(rng)
        elif roll < failure_rate + 0.003:
            status, code = "pending", None
        else:
            status, code = "succeeded", None
        charge = self._add_charge(merchant, customer, card, amount, currency, status, code,
                                  self.g.ip_plan.address(rng, ip_country), device,
                                  f"ses_{rng.getrandbits(64):016x}", created,
                                  "stolen_card" if is_fraud else "none")
        if customer.local_id in self.taken_over:   # looks like the customer, disputed as fraud
            charge = self.chunk.charges[-1] = charge._replace(fraud_pattern="account_takeover")
            is_fraud = True
        if status == "succeeded":
            self._after_success(charge, merchant, is_fraud)

    def _card_testing_burst(self, size: int) -> None:
        rng = self.rng
        g = self.g
        fraud = self.fraud
        merchant = g._card_testing_choice.pick(rng)
        customer = self._new_customer(merchant, is_fraud=True)
        card = self.customer_cards[customer.local_id][0]
        device = self._device()
        ip_country = self._other_country(self.chunk.cards[card].bin_country_code)
        session = f"ses_{rng.getrandbits(64):016x}"
        currency = merchant.default_currency_code
        created = self._time(unusual_hour=rng.random() < fraud.unusual_hour_rate)
        for _ in range(size):
            created += dt.timedelta(seconds=rng.uniform(*fraud.burst_gap_seconds))
            amount = self._minor(rng.uniform(0.5, 3.0), currency)
            if rng.random() < fraud.burst_failure_rate:
                status, code = "failed", _CARD_TESTING_FAILURE_CHOICE.pick(rng)
            else:
                status, code = "succeeded", None
            charge = self._add_charge(merchant, customer, card, amount, currency, status, code,
                                      g.ip_plan.address(rng, ip_country), device, session, created,
                                      "card_testing")
            if status == "succeeded":
                self._after_success(charge, merchant, True)

    def _add_charge(self, merchant, customer, card, amount, currency, status, code, ip, device, session,
                    created, pattern) -> Charge:
        chunk = self.chunk
        message = FAILURE_CODES[code][1] if code else None
        charge = Charge(len(chunk.charges), merchant.merchant_id, customer.local_id, card, amount, currency,
                        status, code, message, ip, device, session, created, pattern)
        chunk.charges.append(charge)
        if status == "succeeded":
            chunk.ledger.append(LedgerEntry(merchant.merchant_id, "charge", "charge", charge.local_id, amount,
                                            self._fee(amount, currency), currency, created,
                                            created + AVAILABLE_AFTER))
        return charge

    def _after_success(self, charge: Charge, merchant: MerchantProfile, is_fraud: bool) -> None:
        """Refunds and disputes of a succeeded charge, and the charge's status path."""
        rng = self.rng
        chunk = self.chunk
        fraud = self.fraud
        path: list[str] = []
        refunded = 0
        last_event = charge.created_at
        if not is_fraud and rng.random() < 0.04:
            parts = [charge.amount] if rng.random() < 0.6 or charge.amount < 4 else [
                max(1, round(charge.amount * rng.uniform(0.1, 0.5)))]
            if len(parts) == 1 and parts[0] < charge.amount and rng.random() < 0.3:
                parts.append(max(1, round((charge.amount - parts[0]) * rng.uniform(0.2, 0.6))))
            for amount in parts:
                last_event += dt.timedelta(days=rng.uniform(0.5, 8))
                status = "succeeded" if rng.random() < 0.96 else "failed"
                reason = _REFUND_REASON_CHOICE.pick(rng)
                refund = Refund(len(chunk.refunds), charge.local_id, amount, status, reason, last_event)
                chunk.refunds.append(refund)
                if status == "succeeded":
                    refunded += amount
                    chunk.ledger.append(LedgerEntry(charge.merchant_id, "refund", "refund", refund.local_id,
                                                    -amount, 0, charge.currency_code, last_event, last_event))
            if refunded:
                path.append("refunded" if refunded == charge.amount else "partially_refunded")
        open_amount = charge.amount - refunded
        dispute_rate = fraud.fraud_dispute_rate if is_fraud else fraud.legit_dispute_rate
        if open_amount > 0 and rng.random() < dispute_rate:
            before = path[-1] if path else "succeeded"
            if is_fraud:
                reason = "fraudulent"
                opened = charge.created_at + dt.timedelta(days=rng.uniform(*fraud.dispute_delay_days))
            else:
                reason = rng.choice(["product_not_received", "duplicate", "subscription_canceled",
                                     "credit_not_processed", "general"])
                opened = charge.created_at + dt.timedelta(days=rng.uniform(3, 60))
            opened = max(opened, last_event + dt.timedelta(hours=1))
            outcome = rng.random()
            win_rate = 0.1 if is_fraud else 0.4
            if outcome < 0.15:
                status, closed = rng.choice(["needs_response", "under_review"]), None
            else:
                status = "won" if outcome < 0.15 + 0.85 * win_rate else "lost"
                closed = opened + dt.timedelta(days=rng.uniform(7, 45))
            dispute = Dispute(len(chunk.disputes), charge.local_id, open_amount, reason, status, opened, closed)
            chunk.disputes.append(dispute)
            chunk.ledger.append(LedgerEntry(charge.merchant_id, "dispute", "dispute", dispute.local_id,
                                            -open_amount, 0, charge.currency_code, opened, opened))
            chunk.ledger.append(LedgerEntry(charge.merchant_id, "fee", None, None,
                                            -self._minor(DISPUTE_FEE_USD, charge.currency_code), 0,
                                            charge.currency_code, opened, opened))
            path.append("disputed")
            if status == "won":
                chunk.ledger.append(LedgerEntry(charge.merchant_id, "dispute", "dispute", dispute.local_id,
                                                open_amount, 0, charge.currency_code, closed, closed))
                path.append(before)
            elif status == "lost":
                path.append("dispute_lost")
        for step, status in enumerate(path, start=1):
            chunk.status_steps.append((charge.local_id, step, status))


class PayoutAccumulator:
    """Collects ledger nets per (merchant, currency, payout period) and emits the payouts.

    A payout covers the balance that became available in one period of the merchant's schedule
    (day, ISO week or calendar month, UTC) and is created at the end of that period, if the period
    ended by ``until`` and its net is positive. Everything else stays on the balance.
    """

    def __init__(self, schedules: dict[int, str]) -> None:
        self.schedules = schedules
        self.nets: dict[tuple[int, str, dt.date], int] = defaultdict(int)

    def period(self, merchant_id: int, moment: dt.datetime) -> tuple[dt.date, dt.date]:
        day = moment.astimezone(dt.UTC).date()
        schedule = self.schedules.get(merchant_id, "daily")
        if schedule == "weekly":
            start = day - dt.timedelta(days=day.weekday())
            return start, start + dt.timedelta(days=7)
        if schedule == "monthly":
            start = day.replace(day=1)
            return start, (start + dt.timedelta(days=32)).replace(day=1)
        return day, day + dt.timedelta(days=1)

    def add(self, chunk: TrafficChunk) -> None:
        self.merge(self.chunk_nets(chunk))

    def chunk_nets(self, chunk: TrafficChunk) -> dict[tuple[int, str, dt.date], int]:
        """The chunk's ledger nets per (merchant, currency, period start), to :meth:`merge` later.

        Small (one entry per merchant, currency and period), so a worker process can send it to
        the loader instead of the chunk's whole ledger.
        """
        nets: dict[tuple[int, str, dt.date], int] = defaultdict(int)
        period = self.period
        for entry in chunk.ledger:
            start, _end = period(entry.merchant_id, entry.available_on)
            nets[(entry.merchant_id, entry.currency_code, start)] += entry.amount - entry.fee
        return dict(nets)

    def merge(self, nets: dict[tuple[int, str, dt.date], int]) -> None:
        """Add nets from :meth:`chunk_nets` (sums, so chunks may be merged in any order)."""
        for key, net in nets.items():
            self.nets[key] += net

    def payouts(self, until: dt.datetime) -> list[tuple]:
        """``(merchant_id, amount, currency, created_at, arrival_date)`` for each due payout, sorted."""
        due = []
        for (merchant_id, currency, start), net in sorted(self.nets.items()):
            if net <= 0:
                continue
            _start, end = self.period(merchant_id, dt.datetime.combine(start, dt.time(), dt.UTC))
            created = dt.datetime.combine(end, dt.time(), dt.UTC)
            if created > until:
                continue
            due.append((merchant_id, net, currency, created, (created + PAYOUT_ARRIVAL).date()))
        return due


def payout_rows(payouts: list[tuple], first_payout_id: int, first_ledger_id: int) -> dict[str, list[tuple]]:
    """``payout`` and ``balance_transaction`` rows for :meth:`PayoutAccumulator.payouts`."""
    payout, ledger = [], []
    for offset, (merchant_id, amount, currency, created, arrival) in enumerate(payouts):
        payout_id = first_payout_id + offset
        payout.append((payout_id, merchant_id, amount, currency, "paid", arrival, created, created))
        ledger.append((first_ledger_id + offset, merchant_id, "payout", payout_id, -amount, 0, -amount, currency,
                       created, created))
    return {"payout": payout, "balance_transaction": ledger}
