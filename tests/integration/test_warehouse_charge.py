"""The charge-grain fact, the authorisation aggregate on it and the fraud labels (real Postgres)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from psycopg2 import sql

from paydata.sql import load_sql
from paydata.warehouse import (
    QualityCheckError,
    build,
    check_quality,
    freshness,
    label_charges,
    refresh_aggregates,
)
from paydata.warehouse.labels import derive_charge_labels

pytestmark = pytest.mark.integration

UTC = dt.UTC
MART_TABLES = {
    "fct_charge": "charge_id",
    "fct_balance_transaction": "balance_transaction_id",
    "dim_merchant": "merchant_version_id",
    "dim_customer": "customer_id",
    "dim_payment_method": "payment_method_id",
    "dim_date": "date_id",
}
# marts.agg_authorisation_rate as it was defined before the charge fact existed (read from the
# staged charges): the aggregate on the fact must give the same numbers on the same data.
AUTHORISATION_RATE_FROM_STAGING = """
WITH charge_attempt AS (
    SELECT c.status, coalesce(pm.brand, 'unknown') AS brand,
           coalesce(pm.bin_country_code, '--') AS card_country_code
    FROM staging.oltp_charge AS c
    LEFT JOIN marts.dim_payment_method AS pm USING (payment_method_id)
    WHERE NOT c._is_deleted AND c.status <> 'pending'
),
attempt_outcome AS (
    SELECT brand, card_country_code, count(*) AS attempt_count,
           count(*) FILTER (WHERE status = 'failed') AS decline_count
    FROM charge_attempt GROUP BY brand, card_country_code
)
SELECT brand, card_country_code, attempt_count, decline_count, attempt_count - decline_count,
       round((attempt_count - decline_count)::numeric / attempt_count, 4),
       round(decline_count::numeric / attempt_count, 4)
FROM attempt_outcome ORDER BY brand, card_country_code
"""


def at(day: int, hour: int = 12, month: int = 1) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=UTC)


def query(conn, statement, params=None):
    with conn.cursor() as cursor:
        cursor.execute(statement, params)
        rows = cursor.fetchall()
    conn.rollback()
    return rows


def snapshot(conn) -> dict[str, list[tuple]]:
    return {table: query(conn, sql.SQL("SELECT * FROM marts.{} ORDER BY {}").format(
        sql.Identifier(table), sql.Identifier(key))) for table, key in MART_TABLES.items()}


def attempt(staging, charge_id, merchant_id, token, card, amount, when, *, status="succeeded",
            failure_code=None, currency="EUR", intent_id=None):
    """A payment intent and one charge attempt on it; a succeeded attempt also posts its ledger row."""
    intent_id = intent_id or charge_id
    staging.put("oltp", "payment_intent", ["payment_intent_id"],
                {"payment_intent_id": intent_id, "merchant_id": merchant_id, "customer_id": token,
                 "amount": amount, "currency_code": currency, "status": "processing", "created_at": when})
    charge_status(staging, charge_id, status, failure_code=failure_code,
                  row={"payment_intent_id": intent_id, "payment_method_id": card, "amount": amount,
                       "currency_code": currency, "created_at": when, "ip_address": f"ip_tok_{charge_id}",
                       "device_id": f"dev_tok_{token}", "session_id": f"ses_tok_{charge_id}"})
    if status == "succeeded":
        staging.ledger(charge_id, merchant_id, "charge", amount, when, currency=currency, fee=30,
                       source_id=charge_id)


def charge_status(staging, charge_id, status, *, failure_code=None, row=None, deleted=False):
    """A later version of a staged charge (the mirror keeps every other value)."""
    if row is None:
        row = query(staging.conn, "SELECT payment_intent_id, payment_method_id, amount, currency_code, created_at, "
                                  "ip_address, device_id, session_id FROM staging.oltp_charge WHERE charge_id = %s",
                    (charge_id,))[0]
        row = dict(zip(("payment_intent_id", "payment_method_id", "amount", "currency_code", "created_at",
                        "ip_address", "device_id", "session_id"), row, strict=True))
    staging.put("oltp", "charge", ["charge_id"],
                dict(row, charge_id=charge_id, status=status, failure_code=failure_code,
                     captured=status not in ("pending", "failed"), updated_at=row["created_at"]),
                deleted=deleted)


def dispute(staging, dispute_id, charge_id, reason, opened_at, *, deleted=False):
    staging.put("oltp", "dispute", ["dispute_id"],
                {"dispute_id": dispute_id, "charge_id": charge_id, "amount": 100, "reason": reason,
                 "status": "needs_response", "opened_at": opened_at, "updated_at": opened_at},
                commit_time=opened_at, deleted=deleted)


def merchant_in(staging, merchant_id, country, tier="low", when=None):
    when = when or at(1, 0)
    staging.put("reference", "merchant", ["merchant_id"], {
        "merchant_id": merchant_id, "legal_name": f"Shop {merchant_id}", "mcc": "5411",
        "country_code": country, "default_currency_code": "EUR", "payout_schedule": "daily",
        "risk_tier_code": tier, "status": "active", "created_at": at(1, 0), "updated_at": when,
    }, commit_time=when, op="S", history=True)


def seed_attempts(staging):
    staging.reference_data()
    staging.merchant(1, "low", at(1, 0), op="S")
    staging.customer("tok_alice", 1)
    staging.card(10, "tok_alice")
    attempt(staging, 100, 1, "tok_alice", 10, 5000, at(3))
    attempt(staging, 101, 1, "tok_alice", 10, 700, at(4), status="failed", failure_code="card_declined")
    attempt(staging, 102, 1, "tok_alice", 10, 9000, at(12), status="pending", currency="JPY")
    staging.merchant(1, "high", at(10))


def test_every_attempt_is_a_row_with_outcome_tokens_usd_and_the_merchant_version_of_its_time(warehouse, staging):
    seed_attempts(staging)
    report = build(warehouse)
    assert report["rows"]["charges_written"] == 3 and report["rows"]["facts_written"] == 1

    rows = query(warehouse, "SELECT c.charge_id, c.status, c.outcome, c.failure_code, c.amount, c.currency_code, "
                            "c.amount_usd, m.risk_tier_code, c.customer_id, c.payment_method_id, "
                            "c.card_country_code, c.ip_address_token, c.device_id, c.session_id, c.is_captured "
                            "FROM marts.fct_charge c JOIN marts.dim_merchant m USING (merchant_version_id) "
                            "ORDER BY c.charge_id")
    assert rows == [
        (100, "succeeded", "authorised", None, 5000, "EUR", Decimal("55.00"), "low", "tok_alice", 10, "FR",
         "ip_tok_100", "dev_tok_tok_alice", "ses_tok_100", True),
        (101, "failed", "declined", "card_declined", 700, "EUR", Decimal("7.70"), "low", "tok_alice", 10, "FR",
         "ip_tok_101", "dev_tok_tok_alice", "ses_tok_101", False),
        (102, "pending", "pending", None, 9000, "JPY", Decimal("60.00"), "high", "tok_alice", 10, "FR",
         "ip_tok_102", "dev_tok_tok_alice", "ses_tok_102", False),
    ]
    # the declined attempt is only in the charge fact; the succeeded one converts like its ledger row
    assert query(warehouse, "SELECT f.amount_usd = c.amount_usd FROM marts.fct_balance_transaction f "
                            "JOIN marts.fct_charge c USING (charge_id)") == [(True,)]
    assert check_quality(warehouse) == {"facts_checked": 1, "charges_checked": 3}

    # a status arriving later rewrites the row; the ledger row it brings joins the same charge
    charge_status(staging, 102, "succeeded")
    staging.ledger(102, 1, "charge", 9000, at(12), currency="JPY", fee=0, source_id=102)
    charge_status(staging, 100, "refunded")
    report = build(warehouse)
    assert report["rows"]["charges_written"] == 2
    assert query(warehouse, "SELECT charge_id, status, outcome, is_captured FROM marts.fct_charge "
                            "WHERE charge_id IN (100, 102) ORDER BY 1") == [
        (100, "refunded", "authorised", True), (102, "succeeded", "authorised", True)]
    fresh = {row["table_name"]: row for row in freshness(warehouse)}
    assert fresh["fct_charge"]["source_lsn"] == staging.lsn["oltp"]


def test_incremental_charge_builds_equal_a_full_rebuild_row_for_row(warehouse, staging):
    batches = iter([
        # charges before their merchant has arrived: an inferred member
        lambda: (staging.reference_data(), staging.customer("tok_bob", 2), staging.card(20, "tok_bob"),
                 attempt(staging, 200, 2, "tok_bob", 20, 1500, at(5)),
                 attempt(staging, 201, 2, "tok_bob", 20, 300, at(8), status="pending")),
        # the merchant's real history (a tier change on Jan 6) arrives
        lambda: (staging.merchant(2, "low", at(1, 0), op="S"), staging.merchant(2, "high", at(6)),
                 attempt(staging, 202, 2, "tok_bob", 20, 800, at(7), status="failed",
                         failure_code="incorrect_cvc")),
        # pending -> failed, a tombstone, a key move (old key deleted, the row under a new key)
        lambda: (charge_status(staging, 201, "failed", failure_code="do_not_honor"),
                 charge_status(staging, 202, "failed", failure_code="incorrect_cvc", deleted=True),
                 attempt(staging, 203, 2, "tok_bob", 20, 800, at(7), status="failed",
                         failure_code="incorrect_cvc", intent_id=202)),
        # a USD rate dated before the charges re-converts them
        lambda: staging.put("reference", "fx_rate", ["base_currency_code", "quote_currency_code", "effective_date"],
                            {"base_currency_code": "EUR", "quote_currency_code": "USD",
                             "effective_date": dt.date(2026, 1, 4), "rate": "1.15"}),
    ])
    reports = []
    for batch in batches:
        batch()
        reports.append(build(warehouse))
    # charge 201 (Jan 8) moves from the inferred member to the version that began on Jan 6
    assert reports[1]["rows"]["charges_repointed"] == 1 and reports[0]["rows"]["inferred_merchants"] == 1
    assert reports[2]["rows"]["charges_written"] == 3 and reports[3]["rows"]["charges_written"] == 4
    incremental = snapshot(warehouse)
    charges = {row[0]: row for row in query(
        warehouse, "SELECT c.charge_id, c.status, c.is_deleted, c.amount_usd, m.risk_tier_code, m.is_inferred, "
                   "c.card_country_code FROM marts.fct_charge c JOIN marts.dim_merchant m USING (merchant_version_id)")}
    assert charges == {
        200: (200, "succeeded", False, Decimal("17.25"), "low", False, "FR"),
        201: (201, "failed", False, Decimal("3.45"), "high", False, "FR"),
        202: (202, "failed", True, Decimal("9.20"), "high", False, "FR"),
        203: (203, "failed", False, Decimal("9.20"), "high", False, "FR"),
    }
    check_quality(warehouse)

    with warehouse.cursor() as cursor:  # replay every window from the start: nothing is rewritten
        cursor.execute("UPDATE marts.build_state SET commit_lsn = 0, index_in_txn = -1")
    warehouse.commit()
    replay = build(warehouse)
    assert replay["rows"]["charges_written"] == 0 and replay["rows"]["charges_repointed"] == 0
    assert snapshot(warehouse) == incremental

    rebuilt = build(warehouse, full_rebuild=True)
    assert rebuilt["rows"]["charges_written"] == 4
    assert snapshot(warehouse) == incremental


def test_authorisation_aggregate_reads_the_fact_and_gives_the_numbers_it_gave_from_staging(warehouse, staging):
    seed_attempts(staging)
    attempt(staging, 103, 1, "tok_alice", 10, 400, at(13), status="failed", failure_code="expired_card")
    attempt(staging, 104, 1, "tok_dan", 40, 400, at(13))  # a card that never arrives: brand unknown
    charge_status(staging, 100, "refunded")
    charge_status(staging, 103, "failed", failure_code="expired_card", deleted=True)
    build(warehouse)
    refresh_aggregates(warehouse)
    on_fact = query(warehouse, "SELECT * FROM marts.agg_authorisation_rate ORDER BY brand, card_country_code")
    assert on_fact == query(warehouse, AUTHORISATION_RATE_FROM_STAGING)
    assert on_fact == [("unknown", "--", 1, 0, 1, Decimal("1.0000"), Decimal("0.0000")),
                       ("visa", "FR", 2, 1, 1, Decimal("0.5000"), Decimal("0.5000"))]
    assert "fct_charge" in query(warehouse, "SELECT definition FROM pg_matviews "
                                            "WHERE matviewname = 'agg_authorisation_rate'")[0][0]


def test_an_aggregate_still_reading_staging_is_replaced_by_the_one_on_the_fact(warehouse, staging):
    seed_attempts(staging)
    build(warehouse)
    with warehouse.cursor() as cursor:  # the marts of an earlier release
        cursor.execute("DROP MATERIALIZED VIEW marts.agg_authorisation_rate CASCADE")
        cursor.execute("CREATE MATERIALIZED VIEW marts.agg_authorisation_rate AS "
                       "SELECT status AS brand, 'XX'::text AS card_country_code FROM staging.oltp_charge")
    warehouse.commit()
    build(warehouse)
    refresh_aggregates(warehouse)
    assert query(warehouse, "SELECT * FROM analytics.authorisation_rates ORDER BY brand") == [
        ("visa", "FR", 2, 1, 1, Decimal("0.5000"), Decimal("0.5000"))]


def test_relationship_checks_name_charges_without_merchant_version_or_intent(warehouse, staging):
    seed_attempts(staging)
    build(warehouse)
    with warehouse.cursor() as cursor:  # merchant 1 now only exists from Jan 10 (its "high" version)
        cursor.execute("DELETE FROM marts.dim_merchant WHERE merchant_id = 1 AND risk_tier_code = 'low'")
    warehouse.commit()
    with pytest.raises(QualityCheckError) as failure:
        check_quality(warehouse)
    found = {(check, key) for check, key, _ in failure.value.violations}
    assert ("fct_charge.merchant_version_id", "100") in found and ("fct_charge.merchant_version_id", "101") in found
    assert ("fct_charge.merchant_version_id", "102") not in found
    assert "merchant 1 has no version" in str(failure.value)

    build(warehouse, full_rebuild=True)
    check_quality(warehouse)
    # a charge whose intent is not staged has no merchant: the build stops naming it
    charge_status(staging, 105, "failed", failure_code="card_declined", row={
        "payment_intent_id": 999, "payment_method_id": 10, "amount": 100, "currency_code": "EUR",
        "created_at": at(14), "ip_address": None, "device_id": None, "session_id": None})
    with pytest.raises(QualityCheckError, match=r"fct_charge.merchant_version_id \[105\]: no merchant: "
                                                r"payment intent 999 is not staged"):
        build(warehouse)
    # a failure code on an authorised charge breaks the status rule
    with warehouse.cursor() as cursor:
        cursor.execute("DELETE FROM staging.oltp_charge WHERE charge_id = 105")
        cursor.execute("UPDATE marts.fct_charge SET failure_code = 'card_declined' WHERE charge_id = 100")
    warehouse.commit()
    with pytest.raises(QualityCheckError, match=r"fct_charge.failure_code_iff_declined \[100\]"):
        check_quality(warehouse)


def seed_labels(staging):
    """Charges on Jan 1 and later, disputes of fraud and other reasons (maturity 60 days by default)."""
    staging.reference_data()
    merchant_in(staging, 1, "DE")
    merchant_in(staging, 2, "FR")
    staging.customer("tok_eve", 1)
    staging.card(50, "tok_eve")
    for charge_id, merchant_id in ((1, 1), (2, 1), (3, 1), (4, 2), (7, 2)):
        attempt(staging, charge_id, merchant_id, "tok_eve", 50, 1000, at(1))
    attempt(staging, 5, 2, "tok_eve", 50, 1000, at(20))
    attempt(staging, 6, 1, "tok_eve", 50, 1000, at(1), status="failed", failure_code="card_declined")
    attempt(staging, 8, 2, "tok_eve", 50, 1000, at(25))
    dispute(staging, 1, 1, "fraudulent", at(20))                  # fraud within the window
    dispute(staging, 2, 2, "product_not_received", at(10))        # not a fraud reason
    dispute(staging, 4, 4, "fraudulent", at(1) + dt.timedelta(days=60))  # exactly at the window's end
    dispute(staging, 5, 5, "fraudulent", at(25))                  # young charge: known, not yet a label
    dispute(staging, 7, 7, "fraudulent", at(15), deleted=True)    # withdrawn at the source
    dispute(staging, 8, 8, "fraudulent", at(5, month=3))          # after the first as_of below


def labels(conn):
    return {row[0]: row[1:] for row in query(
        conn, "SELECT charge_id, is_fraud, dispute_id, label_matured_at FROM marts.fct_charge_label")}


def test_labels_mature_after_the_window_and_count_only_disputes_known_at_as_of(warehouse, staging):
    seed_labels(staging)
    build(warehouse)
    boundary = at(1) + dt.timedelta(days=60)  # Mar 2, 12:00: the Jan 1 charges mature exactly now
    report = label_charges(warehouse, as_of=boundary)
    assert report["charges"] == 7 and report["matured"] == 5 and report["fraud"] == 1
    assert labels(warehouse) == {
        1: (True, 1, boundary), 2: (False, None, boundary), 3: (False, None, boundary),
        4: (False, None, boundary),  # opened at label_matured_at: outside [created_at, matured)
        7: (False, None, boundary),
        5: (None, 5, at(20) + dt.timedelta(days=60)),  # the dispute is known, the label is not mature
        8: (None, None, at(25) + dt.timedelta(days=60)),  # its dispute opens after as_of
    }  # 6 was declined: no label
    assert query(warehouse, "SELECT as_of, maturity, fraud_reasons FROM marts.label_state") == [
        (boundary, dt.timedelta(days=60), ["fraudulent"])]
    assert label_charges(warehouse, as_of=boundary)["written"] == 0  # a rerun rewrites nothing

    # one microsecond earlier the Jan 1 charges are not yet labelled
    label_charges(warehouse, as_of=boundary - dt.timedelta(microseconds=1))
    assert labels(warehouse)[1] == (None, 1, boundary)

    later = at(26, month=3)  # charge 8 matured, its dispute (Mar 5) within its window
    label_charges(warehouse, as_of=later)
    assert labels(warehouse)[8][:2] == (True, 8) and labels(warehouse)[5][:2] == (True, 5)

    # the window is a parameter: with 10 days, charge 1's dispute on day 20 comes too late
    label_charges(warehouse, as_of=boundary, maturity=dt.timedelta(days=10))
    assert labels(warehouse)[1] == (False, None, at(11))


def test_labels_ignore_disputes_the_marts_were_not_built_from_and_derive_without_publishing(warehouse, staging):
    seed_labels(staging)
    build(warehouse)
    dispute(staging, 3, 3, "fraudulent", at(2))  # staged, but no build has processed it yet
    as_of = at(1, month=4)
    label_charges(warehouse, as_of=as_of)
    assert labels(warehouse)[3][0] is False
    build(warehouse)
    with warehouse.cursor() as cursor:  # a job deriving at its own cut-off sees it, publishes nothing
        assert derive_charge_labels(cursor, as_of) == 7
        cursor.execute("SELECT is_fraud FROM charge_label WHERE charge_id = 3")
        assert cursor.fetchone() == (True,)
    warehouse.rollback()
    assert labels(warehouse)[3][0] is False
    assert label_charges(warehouse)["as_of"] == at(25).isoformat()  # default: what the marts know
    with pytest.raises(ValueError, match="timezone-aware"):
        label_charges(warehouse, as_of=dt.datetime(2026, 4, 1))


def test_fraud_rate_by_merchant_country_example(warehouse, staging):
    seed_labels(staging)
    build(warehouse)
    label_charges(warehouse, as_of=at(1) + dt.timedelta(days=60))
    with warehouse.cursor() as cursor:
        cursor.execute(load_sql("warehouse/queries/examples/fraud_rate_by_merchant_country.sql"), {"limit": 10})
        rows = cursor.fetchall()
    warehouse.rollback()
    # DE: charges 1, 2, 3 (1 fraud); FR: charges 4 and 7 (none); 5 and 8 are not mature
    assert rows == [("DE", 3, 1, Decimal("0.3333"), Decimal("11.00")),
                    ("FR", 2, 0, Decimal("0.0000"), Decimal("0"))]
