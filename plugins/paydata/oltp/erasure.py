"""Right to erasure (GDPR Art. 17) by crypto-shredding.

:func:`erase_customer` clears the customer's ciphertexts and blind index, sets ``erased_at``,
detaches their cards and deletes their ``customer_data_key`` row, all in one transaction with an
``audit_log`` row. Every copy of the customer's ciphertext that already left the database (CDC
stream, warehouse, MongoDB, backups) names a data key that no longer exists, so it can never be
decrypted again. The customer row itself stays: charges and the ledger reference it.

Given the Mongo database (and the landing folder), the erasure also removes what the NoSQL ingest
holds about the customer's sessions: session documents with their events, telemetry samples and
feedback, in Mongo and in landing files still retained (:func:`erase_customer_nosql`). The
sessions are found through the customer's charges, which keep their ``session_id``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from paydata.crypto import default_envelope
from paydata.oltp import audit
from paydata.oltp._db import oltp_sql, transaction
from paydata.oltp.errors import InvalidRequest, NotFound

ERASURE_REASONS = (
    "data_subject_request",   # the customer asked (Art. 17)
    "merchant_request",       # the merchant closed the customer's account and asked us to erase
    "retention_expired",      # retention period over
    "legal_order",            # a court or regulator ordered it
)


@dataclass
class ErasureResult:
    customer_id: int
    erased_now: bool        # False: the customer had already been erased (nothing changed)
    erased_at: dt.datetime
    data_key_id: str | None  # id of the data key destroyed now (not secret), None if none was left
    cards_detached: int
    nosql: dict | None = None  # counts removed per place by erase_customer_nosql, when it ran


def erase_customer(conn, customer_id: int, reason: str, *, mongo_database=None,
                   landing_dir: Path | None = None) -> ErasureResult:
    """Erase a customer's personal data and destroy their data key; idempotent.

    With ``mongo_database`` the customer's NoSQL documents and retained landing records are
    removed after the OLTP transaction commits (:func:`erase_customer_nosql`); if that step fails,
    calling this function again finishes it.

    ``reason`` is one of :data:`ERASURE_REASONS` (a code; the audit log never holds free text).
    A second call on an erased customer changes nothing and writes no second audit row; a
    customer whose erasure was interrupted between steps cannot exist (one transaction). Raises
    :class:`InvalidRequest` for an unknown reason, :class:`NotFound` for an unknown customer.
    """
    if isinstance(customer_id, bool) or not isinstance(customer_id, int) or customer_id <= 0:
        raise InvalidRequest(f"customer_id must be a positive integer id, got {customer_id!r}")
    if reason not in ERASURE_REASONS:
        raise InvalidRequest(f"erasure reason must be one of {', '.join(ERASURE_REASONS)}; got {reason!r}")
    params = {"customer_id": customer_id}
    result = None
    with transaction(conn, f"erase customer {customer_id}") as cursor:
        cursor.execute(oltp_sql("customer_lock"), params)
        customer = cursor.fetchone()
        if customer is None:
            raise NotFound(f"customer {customer_id} does not exist")
        already_erased_at = customer[6]
        cursor.execute(oltp_sql("customer_data_key_lock"), params)
        key_row = cursor.fetchone()
        if already_erased_at is not None and key_row is None:
            result = ErasureResult(customer_id, False, already_erased_at, None, 0)
        else:
            cursor.execute(oltp_sql("customer_erase"), params)
            erased_at = cursor.fetchone()[0]
            cursor.execute(oltp_sql("customer_data_key_delete"), params)
            deleted = cursor.fetchone()
            cursor.execute(oltp_sql("payment_method_detach_customer_cards"), params)
            cards_detached = cursor.rowcount
            key_id = deleted[0] if deleted else None
            audit.record(
                cursor, "customer_erased", "customer", customer_id, reason=reason,
                detail={"data_key_id": key_id, "cards_detached": cards_detached},
            )
    if result is None:
        if deleted is not None:
            # This process may still hold the unwrapped key in its cache; drop it too.
            default_envelope().forget(deleted[1])
        result = ErasureResult(customer_id, True, erased_at, key_id, cards_detached)
    if mongo_database is not None:
        result.nosql = erase_customer_nosql(conn, customer_id, mongo_database, landing_dir)
    return result


def erase_customer_nosql(conn, customer_id: int, mongo_database, landing_dir: Path | None = None) -> dict:
    """Remove the customer's sessions, events, telemetry and feedback from Mongo and retained landing files.

    Returns counts per place (see :func:`paydata.nosql.hygiene.erase_sessions`); idempotent.
    """
    from paydata.crypto import default_tokeniser
    from paydata.nosql.hygiene import erase_sessions
    from paydata.sql import load_sql

    with conn.cursor() as cursor:
        cursor.execute(load_sql("nosql/customer_sessions.sql"), {"customer_id": customer_id})
        sessions = [row[0] for row in cursor.fetchall()]
    conn.rollback()
    return erase_sessions(mongo_database, default_tokeniser(), sessions, landing_dir)
