"""Concurrent OLTP writers: N workers doing a realistic payment-API mix at the same time.

Used to exercise the CDC pipeline and the schema under concurrency (tests, benchmarks, demos).
Each worker has its own connection (from ``conn_factory``) and its own random generator seeded
from ``(seed, worker index)``, so the sequence of operations a worker chooses is reproducible;
the ids it gets depend on how the workers interleave. Workers act on the customers, cards and
charges they created themselves, through :mod:`paydata.oltp.app` and :mod:`paydata.oltp.erasure`.

Operations: new customers and cards, payments (pending), settlements (pending -> succeeded or
failed), refunds (partial and full), disputes opened and decided, card detaches, card removals
(deleted when never charged), customer lookups and reads, and occasional erasure requests.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from paydata.oltp import app
from paydata.oltp._db import oltp_sql, transaction
from paydata.oltp.cards import luhn_complete
from paydata.oltp.erasure import erase_customer
from paydata.oltp.errors import ConcurrencyConflict, DatabaseError, InvalidRequest, OltpError

# Relative weights of each operation; an operation whose precondition is not met (e.g. no pending
# charge yet) falls back to creating what it needs.
DEFAULT_MIX: dict[str, int] = {
    "create_customer": 8,
    "add_card": 9,
    "create_payment": 30,
    "settle_charge": 24,
    "refund": 7,
    "open_dispute": 2,
    "close_dispute": 2,
    "detach_card": 2,
    "remove_card": 3,
    "find_customer": 4,
    "read_customer": 5,
    "erase_customer": 1,
}
MAX_ATTEMPTS = 5
FAILURE_CODES = ("card_declined", "insufficient_funds", "do_not_honor", "expired_card", "processing_error")
_FIRST_NAMES = ("Ana", "Ben", "Chloe", "Dmitri", "Emeka", "Fatima", "Goran", "Hana", "Ines", "Jonas")
_LAST_NAMES = ("Silva", "Novak", "Okafor", "Tanaka", "Muller", "Garcia", "Kowalski", "Haddad", "Berg")
_CARD_PREFIXES = ("4", "51", "55", "2221", "34", "37", "6011", "3530", "62")


@dataclass
class WriterStats:
    """Outcome of :func:`run_writers`: operations done and errors, per operation name."""

    workers: int
    ops: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    retries: int = 0
    elapsed_s: float = 0.0
    error_samples: list[str] = field(default_factory=list)

    @property
    def total_ops(self) -> int:
        return sum(self.ops.values())

    @property
    def total_errors(self) -> int:
        return sum(self.errors.values())

    def merge(self, other: WriterStats) -> None:
        self.ops.update(other.ops)
        self.errors.update(other.errors)
        self.retries += other.retries
        self.error_samples.extend(other.error_samples[: max(0, 20 - len(self.error_samples))])

    def as_dict(self) -> dict[str, Any]:
        return {"workers": self.workers, "ops": dict(self.ops), "errors": dict(self.errors),
                "retries": self.retries, "elapsed_s": round(self.elapsed_s, 3),
                "total_ops": self.total_ops, "total_errors": self.total_errors,
                "error_samples": list(self.error_samples)}


@dataclass
class _Customer:
    customer_id: int
    merchant_id: int
    email: str
    cards: list[int] = field(default_factory=list)
    unused_cards: set[int] = field(default_factory=set)


class _Worker:
    def __init__(self, index: int, seed: int, conn_factory, merchants: list[int], mix: dict[str, int]):
        self.index = index
        self.rng = random.Random(f"paydata-writer:{seed}:{index}")
        self.conn_factory = conn_factory
        self.conn = None
        self.merchants = merchants
        self.names = list(mix)
        self.weights = [mix[name] for name in self.names]
        self.stats = WriterStats(workers=1)
        self.customers: list[_Customer] = []
        self.pending: list[int] = []
        self.refundable: dict[int, int] = {}  # charge_id -> amount not yet refunded
        self.disputes: list[int] = []
        self.serial = 0

    # -- operations: each returns the operation name actually performed ----------------------

    def create_customer(self) -> str:
        self.serial += 1
        first, last = self.rng.choice(_FIRST_NAMES), self.rng.choice(_LAST_NAMES)
        email = f"{first.lower()}.{last.lower()}.w{self.index}n{self.serial}@example.com"
        phone = f"+1 555 {self.rng.randrange(1000000, 9999999)}"
        merchant_id = self.rng.choice(self.merchants)
        country = self.rng.choice(("US", "DE", "FR", "GB", "JP", "BR", "NG", "IN"))
        customer_id = app.create_customer(self.conn, merchant_id, email, f"{first} {last}", phone, country)
        self.customers.append(_Customer(customer_id, merchant_id, email))
        return "create_customer"

    def add_card(self) -> str:
        if not self.customers:
            return self.create_customer()
        customer = self.rng.choice(self.customers)
        prefix = self.rng.choice(_CARD_PREFIXES)
        length = 15 if prefix in ("34", "37") else 16
        body = prefix + "".join(str(self.rng.randrange(10)) for _ in range(length - len(prefix) - 1))
        year = time.gmtime().tm_year + self.rng.randrange(1, 6)
        funding = self.rng.choice(("credit", "credit", "debit", "prepaid"))
        card = app.add_card(self.conn, customer.customer_id, luhn_complete(body), self.rng.randrange(1, 13),
                            year, funding=funding)
        customer.cards.append(card)
        customer.unused_cards.add(card)
        return "add_card"

    def create_payment(self) -> str:
        with_cards = [customer for customer in self.customers if customer.cards]
        if not with_cards:
            return self.add_card()
        customer = self.rng.choice(with_cards)
        card = self.rng.choice(customer.cards)
        amount = self.rng.choice((self.rng.randrange(100, 5000), self.rng.randrange(5000, 100000)))
        ip = f"198.51.100.{self.rng.randrange(1, 255)}"
        payment = app.create_payment(
            self.conn, customer.merchant_id, customer.customer_id, card, amount, ip_address=ip,
            device_id=f"dev-{self.index}-{self.rng.randrange(10000)}",
            session_id=f"sess-{self.index}-{self.serial}-{self.rng.randrange(10**6)}",
        )
        customer.unused_cards.discard(card)
        self.pending.append(payment.charge_id)
        return "create_payment"

    def settle_charge(self) -> str:
        if not self.pending:
            return self.create_payment()
        charge_id = self.pending.pop(self.rng.randrange(len(self.pending)))
        if self.rng.random() < 0.85:
            app.update_charge_status(self.conn, charge_id, "succeeded")
            self.refundable[charge_id] = self._charge_amount(charge_id)
        else:
            app.update_charge_status(self.conn, charge_id, "failed", self.rng.choice(FAILURE_CODES))
        return "settle_charge"

    def refund(self) -> str:
        if not self.refundable:
            return self.settle_charge()
        charge_id = self.rng.choice(sorted(self.refundable))
        left = self.refundable[charge_id]
        amount = left if self.rng.random() < 0.5 else max(1, left // self.rng.randrange(2, 5))
        app.refund(self.conn, charge_id, amount, reason="requested_by_customer")
        if amount >= left:
            del self.refundable[charge_id]
        else:
            self.refundable[charge_id] = left - amount
        return "refund"

    def open_dispute(self) -> str:
        if not self.refundable:
            return self.settle_charge()
        charge_id = self.rng.choice(sorted(self.refundable))
        self.disputes.append(app.open_dispute(self.conn, charge_id, reason="fraudulent"))
        del self.refundable[charge_id]  # not refundable while disputed
        return "open_dispute"

    def close_dispute(self) -> str:
        if not self.disputes:
            return self.open_dispute()
        dispute_id = self.disputes.pop(self.rng.randrange(len(self.disputes)))
        app.close_dispute(self.conn, dispute_id, won=self.rng.random() < 0.4)
        return "close_dispute"

    def detach_card(self) -> str:
        with_cards = [customer for customer in self.customers if customer.cards]
        if not with_cards:
            return self.add_card()
        customer = self.rng.choice(with_cards)
        card = customer.cards.pop(self.rng.randrange(len(customer.cards)))
        customer.unused_cards.discard(card)
        app.detach_card(self.conn, card)
        return "detach_card"

    def remove_card(self) -> str:
        with_unused = [customer for customer in self.customers if customer.unused_cards]
        if not with_unused:
            return self.add_card()
        customer = self.rng.choice(with_unused)
        card = min(customer.unused_cards)
        customer.unused_cards.discard(card)
        customer.cards.remove(card)
        app.remove_card(self.conn, card)
        return "remove_card"

    def find_customer(self) -> str:
        if not self.customers:
            return self.create_customer()
        customer = self.rng.choice(self.customers)
        found = app.find_customer_by_email(self.conn, customer.merchant_id, customer.email.upper())
        if customer.customer_id not in found:
            raise InvalidRequest(f"blind-index lookup did not find customer {customer.customer_id}")
        return "find_customer"

    def read_customer(self) -> str:
        if not self.customers:
            return self.create_customer()
        customer = self.rng.choice(self.customers)
        if app.read_customer(self.conn, customer.customer_id, purpose="integrity_check")["email"] != customer.email:
            raise InvalidRequest(f"customer {customer.customer_id} did not decrypt to what was written")
        return "read_customer"

    def erase_customer(self) -> str:
        if len(self.customers) < 5:
            return self.create_customer()
        customer = self.customers.pop(self.rng.randrange(len(self.customers)))
        erase_customer(self.conn, customer.customer_id, "data_subject_request")
        return "erase_customer"

    def _charge_amount(self, charge_id: int) -> int:
        with transaction(self.conn, "read charge amount") as cursor:
            cursor.execute(oltp_sql("charge_lock"), {"charge_id": charge_id})
            return cursor.fetchone()[2]

    # -- loop ---------------------------------------------------------------------------------

    def _connect(self) -> None:
        if self.conn is not None and not self.conn.closed:
            return
        self.conn = self.conn_factory()

    def step(self) -> None:
        name = self.rng.choices(self.names, self.weights)[0]
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                self._connect()
                done = getattr(self, name)()
                self.stats.ops[done] += 1
                return
            except ConcurrencyConflict:
                self.stats.retries += 1
                if attempt == MAX_ATTEMPTS:
                    self._error(name, "ConcurrencyConflict", "gave up after retries")
                    return
                time.sleep(0.005 * attempt * (1 + self.rng.random()))
            except (OltpError, ValueError) as exc:
                self._error(name, type(exc).__name__, str(exc))
                if isinstance(exc, DatabaseError) and self.conn is not None and self.conn.closed:
                    self.conn = None
                return

    def _error(self, name: str, kind: str, message: str) -> None:
        self.stats.errors[f"{name}:{kind}"] += 1
        if len(self.stats.error_samples) < 20:
            self.stats.error_samples.append(f"worker {self.index} {name}: {message}")

    def run(self, deadline: float | None, max_ops: int | None, stop_event: threading.Event) -> None:
        done = 0
        try:
            while not stop_event.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if max_ops is not None and done >= max_ops:
                    break
                self.step()
                done += 1
        except Exception as exc:  # a worker must report, not vanish silently from its thread
            self._error("worker", type(exc).__name__, str(exc))
        finally:
            if self.conn is not None and not self.conn.closed:
                self.conn.close()


def _default_conn_factory():
    from paydata import settings

    return settings.pg_connect(settings.OLTP_CONN_ID)


def active_merchants(conn) -> list[int]:
    """Ids of the active merchants in ``merchant_ref`` (those that can take payments)."""
    with transaction(conn, "list active merchants") as cursor:
        cursor.execute(oltp_sql("merchant_ref_active"))
        return [merchant_id for merchant_id, _ in cursor.fetchall()]


def run_writers(
    n_workers: int = 4,
    *,
    duration_s: float | None = None,
    ops_per_worker: int | None = None,
    seed: int = 0,
    conn_factory: Callable[[], Any] | None = None,
    stop_event: threading.Event | None = None,
    merchant_ids: list[int] | None = None,
    mix: dict[str, int] | None = None,
) -> WriterStats:
    """Run ``n_workers`` writer threads against OLTP until a limit is reached; return the stats.

    Stops when ``duration_s`` has passed, each worker did ``ops_per_worker`` operations, or
    ``stop_event`` is set, whichever comes first (at least one must be given). ``conn_factory()``
    opens one psycopg2 connection to OLTP per worker (default: the ``paydata_oltp`` connection).
    ``merchant_ids`` default to the active merchants in ``merchant_ref`` (run the reference sync
    first). ``mix`` maps operation names (see :data:`DEFAULT_MIX`) to weights.

    Serialization failures and deadlocks are retried (counted in ``retries``); any other error is
    counted per ``"<operation>:<error class>"`` in ``errors`` with a few sample messages, and the
    worker carries on. Raises :class:`InvalidRequest` for bad arguments or no active merchant.
    """
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers <= 0:
        raise InvalidRequest(f"n_workers must be a positive integer, got {n_workers!r}")
    if duration_s is None and ops_per_worker is None and stop_event is None:
        raise InvalidRequest("give duration_s, ops_per_worker or stop_event, or the writers never stop")
    if duration_s is not None and duration_s <= 0:
        raise InvalidRequest(f"duration_s must be positive, got {duration_s!r}")
    if ops_per_worker is not None and ops_per_worker <= 0:
        raise InvalidRequest(f"ops_per_worker must be positive, got {ops_per_worker!r}")
    mix = dict(DEFAULT_MIX if mix is None else mix)
    unknown = sorted(set(mix) - set(DEFAULT_MIX))
    if unknown or not mix or any(weight < 0 for weight in mix.values()) or not any(mix.values()):
        raise InvalidRequest(
            f"mix must give non-negative weights (not all zero) to operations among {', '.join(DEFAULT_MIX)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    conn_factory = conn_factory or _default_conn_factory
    if merchant_ids is None:
        conn = conn_factory()
        try:
            merchant_ids = active_merchants(conn)
        finally:
            conn.close()
    if not merchant_ids:
        raise InvalidRequest("no active merchant to write for: run the reference sync first")
    stop_event = stop_event or threading.Event()
    workers = [_Worker(index, seed, conn_factory, list(merchant_ids), mix) for index in range(n_workers)]
    started = time.monotonic()
    deadline = started + duration_s if duration_s is not None else None
    threads = [
        threading.Thread(target=worker.run, args=(deadline, ops_per_worker, stop_event),
                         name=f"oltp-writer-{worker.index}", daemon=True)
        for worker in workers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = WriterStats(workers=n_workers)
    for worker in workers:
        stats.merge(worker.stats)
    stats.elapsed_s = time.monotonic() - started
    return stats
