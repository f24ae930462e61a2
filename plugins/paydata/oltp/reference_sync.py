"""Keep OLTP's reference replicas (``currency_ref``, ``merchant_ref``) in step with the reference DB.

OLTP foreign keys point at local replicas so payments never wait on a cross-database call (see
``docs/schema.md``). :func:`sync_reference` copies the reference data over: it reads every
chargeable currency and every merchant from one snapshot, COPYs them into temporary tables and
upserts from there, rewriting only rows that differ. Replica rows are never deleted.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg2
import psycopg2.extensions

from paydata.oltp._db import oltp_sql, reference_sql, transaction
from paydata.oltp.errors import DatabaseError


def _csv(rows: Iterable[Sequence[Any]]) -> io.StringIO:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    buffer.seek(0)
    return buffer


def read_reference(reference_conn) -> tuple[list[tuple], list[tuple]]:
    """``(currencies, merchants)`` from the reference DB, read in one read-only snapshot.

    Currencies are ``(currency_code, minor_units)`` for chargeable currencies only (known minor
    units); merchants are ``(merchant_id, country_code, default_currency_code, status)``. The
    connection must have no transaction open; it is left idle. Raises :class:`DatabaseError`.
    """
    if reference_conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        raise DatabaseError("reading the reference DB needs a connection with no open transaction")
    try:
        with reference_conn.cursor() as cursor:
            cursor.execute(reference_sql("snapshot"))
            cursor.execute(reference_sql("select_chargeable_currencies"))
            currencies = [(code.strip(), units) for code, units in cursor.fetchall()]
            cursor.execute(reference_sql("select_merchants"))
            merchants = [
                (merchant_id, country.strip(), currency.strip(), status)
                for merchant_id, country, currency, status in cursor.fetchall()
            ]
    except psycopg2.Error as exc:
        raise DatabaseError(f"reading the reference DB failed: {exc}".strip()) from exc
    finally:
        reference_conn.rollback()
    return currencies, merchants


def _upsert(cursor, copy_statement: str, upsert_statement: str, rows: list[tuple]) -> dict[str, int]:
    cursor.copy_expert(copy_statement, _csv(rows))
    cursor.execute(upsert_statement)
    written = [inserted for (inserted,) in cursor.fetchall()]
    inserted = sum(1 for flag in written if flag)
    updated = len(written) - inserted
    return {"read": len(rows), "inserted": inserted, "updated": updated,
            "unchanged": len(rows) - inserted - updated}


def sync_reference(reference_conn, oltp_conn) -> dict[str, dict[str, int]]:
    """Upsert ``currency_ref`` and ``merchant_ref`` in OLTP from the reference DB; never delete.

    Returns counts per replica, e.g. ``{"currency_ref": {"read", "inserted", "updated",
    "unchanged"}, "merchant_ref": {..., "skipped_unchargeable_currency"}}`` (JSON-serialisable,
    suitable for XCom). Idempotent: a second run with no reference change reports 0 inserted and
    0 updated, and rewrites nothing.

    Only chargeable currencies are replicated, so a merchant whose default currency has no minor
    units in the reference DB (e.g. XAU) cannot be replicated and is counted as skipped. Both
    replicas change in one OLTP transaction: a failure (e.g. a CHECK rejecting a malformed
    reference row) leaves OLTP as it was and raises :class:`RuleViolation` / :class:`DatabaseError`.
    Both connections must have no transaction open.
    """
    currencies, merchants = read_reference(reference_conn)
    chargeable = {code for code, _ in currencies}
    replicable = [row for row in merchants if row[2] in chargeable]
    with transaction(oltp_conn, "reference sync") as cursor:
        cursor.execute(oltp_sql("reference_stage_create"))
        currency_counts = _upsert(
            cursor, oltp_sql("currency_ref_stage_copy"), oltp_sql("currency_ref_upsert"), currencies
        )
        merchant_counts = _upsert(
            cursor, oltp_sql("merchant_ref_stage_copy"), oltp_sql("merchant_ref_upsert"), replicable
        )
    merchant_counts["read"] = len(merchants)
    merchant_counts["skipped_unchargeable_currency"] = len(merchants) - len(replicable)
    return {"currency_ref": currency_counts, "merchant_ref": merchant_counts}
