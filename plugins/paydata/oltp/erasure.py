"""Right to erasure (GDPR Art. 17): destroy the customer's data key, wipe what links them.

:func:`erase_customer` does, for one customer:

1. runs the downstream hooks (e.g. Mongo documents and retained landing files keyed by the
   customer's sessions) with the identifiers they need, while those are still known;
2. destroys every data key of the customer in the key store (:class:`paydata.keystore.KeyStore`),
   which makes every copy of their ciphertext anywhere (warehouse, Mongo, backups) unreadable;
3. in one OLTP transaction: clears the ciphertexts and blind index, sets ``erased_at``, wipes the
   charges' ip address, device and session ids and the processor's free text, detaches the cards
   and writes an ``audit_log`` row.

Steps 1-2 run while the OLTP transaction holds the customer's rows locked and before it commits:
a failure anywhere rolls the OLTP side back and a rerun repeats every step (hooks and key
destruction are idempotent), so an erasure is never left half done without a retry finishing it.

What the erasure leaves behind for a while (the key's bytes in the key store's file and the WAL,
old row versions, backups taken before) is bounded by the erasure window and proven gone by
:func:`paydata.keystore.window.complete_erasures` (DAG ``erasure_window``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from paydata.keystore import KeyStore, default_keystore
from paydata.oltp import audit
from paydata.oltp._db import oltp_sql, transaction
from paydata.oltp.errors import InvalidRequest, NotFound

ERASURE_REASONS = (
    "data_subject_request",   # the customer asked (Art. 17)
    "merchant_request",       # the merchant closed the customer's account and asked us to erase
    "retention_expired",      # retention period over
    "legal_order",            # a court or regulator ordered it
)


@dataclass(frozen=True)
class ErasureSubject:
    """What downstream stores may have keyed the customer's data by, read before it is wiped."""

    customer_id: int
    charge_ids: tuple[int, ...]
    session_ids: tuple[str, ...]
    device_ids: tuple[str, ...]


# A hook removes the subject's data from one downstream place and returns counts (JSON-able).
# It must be idempotent: a failed erasure is retried from the start.
ErasureHook = Callable[[ErasureSubject], dict]


@dataclass
class ErasureResult:
    customer_id: int
    erased_now: bool        # False: the customer had already been erased (nothing changed)
    erased_at: dt.datetime
    data_key_id: str | None  # id of the (first) data key destroyed now (not secret), None if none
    cards_detached: int
    charges_wiped: int = 0
    data_key_ids: tuple[str, ...] = ()
    hooks: dict = field(default_factory=dict)  # hook name -> the counts it returned


def erase_customer(conn, customer_id: int, reason: str, *, keys: KeyStore | None = None,
                   hooks: Mapping[str, ErasureHook] | None = None) -> ErasureResult:
    """Erase a customer's personal data and destroy their data key; idempotent.

    ``reason`` is one of :data:`ERASURE_REASONS` (a code; the audit log never holds free text).
    ``hooks`` (name -> :data:`ErasureHook`) remove the customer's data from downstream stores.
    A second call on an erased customer changes nothing and writes no second audit row. Raises
    :class:`InvalidRequest` for an unknown reason, :class:`NotFound` for an unknown customer;
    a hook's own exception rolls the erasure back (rerun it once the hook's store is back).
    """
    if isinstance(customer_id, bool) or not isinstance(customer_id, int) or customer_id <= 0:
        raise InvalidRequest(f"customer_id must be a positive integer id, got {customer_id!r}")
    if reason not in ERASURE_REASONS:
        raise InvalidRequest(f"erasure reason must be one of {', '.join(ERASURE_REASONS)}; got {reason!r}")
    keys = keys or default_keystore()
    params = {"customer_id": customer_id}
    with transaction(conn, f"erase customer {customer_id}") as cursor:
        cursor.execute(oltp_sql("customer_lock"), params)
        customer = cursor.fetchone()
        if customer is None:
            raise NotFound(f"customer {customer_id} does not exist")
        already_erased_at = customer[6]
        cursor.execute(oltp_sql("charge_linkage_of_customer"), params)
        linkage = cursor.fetchall()
        held_keys = keys.key_ids("customer", customer_id)
        if already_erased_at is not None and not held_keys and not linkage:
            return ErasureResult(customer_id, False, already_erased_at, None, 0)
        subject = ErasureSubject(
            customer_id,
            tuple(charge_id for charge_id, _, _ in linkage),
            tuple(sorted({session for _, session, _ in linkage if session})),
            tuple(sorted({device for _, _, device in linkage if device})),
        )
        hook_counts = {name: hook(subject) for name, hook in (hooks or {}).items()}
        destroyed = keys.destroy("customer", customer_id, reason="erasure")
        cursor.execute(oltp_sql("customer_erase"), params)
        erased_at = cursor.fetchone()[0]
        cursor.execute(oltp_sql("charge_wipe_linkage"), {"charge_ids": list(subject.charge_ids)})
        charges_wiped = cursor.rowcount
        cursor.execute(oltp_sql("payment_method_detach_customer_cards"), params)
        cards_detached = cursor.rowcount
        # Every WAL record holding the values wiped here lies before this position: the erasure
        # window waits until no WAL segment from before it is left.
        cursor.execute(oltp_sql("current_wal_lsn"))
        wal_lsn = cursor.fetchone()[0]
        audit.record(
            cursor, "customer_erased", "customer", customer_id, reason=reason,
            detail={"data_key_id": destroyed[0] if destroyed else None, "data_key_ids": destroyed,
                    "cards_detached": cards_detached, "charges_wiped": charges_wiped,
                    "hooks": hook_counts, "wal_lsn": wal_lsn},
        )
    return ErasureResult(customer_id, True, erased_at, destroyed[0] if destroyed else None, cards_detached,
                         charges_wiped, tuple(destroyed), hook_counts)
