"""Seeding reference data and COPYing traffic into real, freshly migrated databases."""

from __future__ import annotations

import datetime as dt

import psycopg2
import pytest
from psycopg2 import sql

from paydata.crypto import DataKeyResolver
from paydata.crypto.pii import find_pii
from paydata.generator import GeneratorError, TrafficConfig
from paydata.generator.loader import load_traffic
from paydata.generator.reference import (
    MerchantProfile,
    apply_merchant_changes,
    generate_merchants,
    load_merchant_profiles,
    seed_reference,
)
from paydata.generator.traffic import TrafficGenerator
from paydata.keystore import default_keystore
from paydata.migrations import apply_migrations
from paydata.oltp.reference_sync import sync_reference

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_keystore")]

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def databases(stack, admin_connect, fresh_database):
    ref = admin_connect(fresh_database(prefix="gen_ref"))
    oltp = admin_connect(fresh_database(prefix="gen_oltp"))
    apply_migrations(ref, "reference")
    apply_migrations(oltp, "oltp")
    seed_reference(ref, merchants=25, seed=3, fx_start=START.date(), fx_days=5)
    sync_reference(ref, oltp)
    return ref, oltp


def scalar(conn, query, params=None):
    with conn.cursor() as cursor:
        cursor.execute(query, params)
        value = cursor.fetchone()[0]
    conn.rollback()
    return value


def test_reference_seed_is_complete_and_idempotent(databases):
    ref, oltp = databases
    assert scalar(ref, "SELECT count(*) FROM country") == 249
    units = dict(_rows(ref, "SELECT currency_code, minor_units FROM currency WHERE currency_code IN "
                            "('JPY', 'USD', 'KWD', 'XAU')"))
    assert units == {"JPY": 0, "USD": 2, "KWD": 3, "XAU": None}
    assert default_keystore().count("merchant") == 25
    assert scalar(oltp, "SELECT count(*) FROM merchant_ref") == 25
    again = seed_reference(ref, merchants=25, seed=3, fx_start=START.date(), fx_days=5)
    assert again == {"currencies": 0, "countries": 0, "risk_tiers": 0, "fx_rates": 0, "merchants": 0}
    resync = sync_reference(ref, oltp)
    assert [(t, c["inserted"], c["updated"]) for t, c in sorted(resync.items())] == [
        ("currency_ref", 0, 0), ("merchant_ref", 0, 0)]


def test_merchant_changes_are_real_updates(databases):
    ref, _oltp = databases
    before = {row[0]: row[1:] for row in _rows(ref, "SELECT merchant_id, risk_tier_code, mcc, payout_schedule "
                                                    "FROM merchant")}
    changes = apply_merchant_changes(ref, 6, seed=1)
    assert len(changes) == 6 and all(c.old_value != c.new_value for c in changes)
    after = {row[0]: row[1:] for row in _rows(ref, "SELECT merchant_id, risk_tier_code, mcc, payout_schedule "
                                                   "FROM merchant")}
    assert {m for m in before if before[m] != after[m]} == {c.merchant_id for c in changes}
    with pytest.raises(GeneratorError, match=">= 0"):
        apply_merchant_changes(ref, -1, seed=1)


def test_traffic_loads_consistently_without_plaintext_and_only_once(databases):
    ref, oltp = databases
    pans = []
    merchants = load_merchant_profiles(ref)
    config = TrafficConfig(payments=3000, start=START, days=3, seed=11, chunk_size=1000)
    result = load_traffic(oltp, config, merchants, progress=False, pan_sink=pans.append)
    assert not result.skipped and result.rows["charge"] == 3000
    assert scalar(oltp, "SELECT count(*) FROM charge") == 3000
    assert default_keystore().count("customer") == scalar(oltp, "SELECT count(*) FROM customer")

    # The ledger matches each charge: credit, refunds, disputes (withdrawn unless won).
    mismatches = scalar(oltp, """
        WITH posted AS (
            SELECT c.charge_id, c.amount, c.status,
                   (SELECT coalesce(sum(b.amount), 0) FROM balance_transaction b
                     WHERE b.type = 'charge' AND b.source_id = c.charge_id) AS credited,
                   (SELECT coalesce(sum(b.amount), 0) FROM balance_transaction b JOIN refund r
                       ON b.type = 'refund' AND b.source_id = r.refund_id WHERE r.charge_id = c.charge_id) AS refunds,
                   (SELECT coalesce(sum(r.amount), 0) FROM refund r
                     WHERE r.charge_id = c.charge_id AND r.status = 'succeeded') AS refunded,
                   (SELECT coalesce(sum(b.amount), 0) FROM balance_transaction b JOIN dispute d
                       ON b.type = 'dispute' AND b.source_id = d.dispute_id WHERE d.charge_id = c.charge_id) AS disputes,
                   (SELECT coalesce(sum(d.amount), 0) FROM dispute d
                     WHERE d.charge_id = c.charge_id AND d.status <> 'won') AS disputed
            FROM charge c
        )
        SELECT count(*) FROM posted
        WHERE (status = 'failed' AND credited <> 0)
           OR (status NOT IN ('failed', 'pending') AND credited <> amount)
           OR refunds <> -refunded OR disputes <> -disputed
           OR (status = 'refunded' AND refunded <> amount)
           OR (status = 'dispute_lost' AND NOT EXISTS (
                SELECT 1 FROM dispute d WHERE d.charge_id = posted.charge_id AND d.status = 'lost'))
    """)
    assert mismatches == 0
    assert scalar(oltp, "SELECT count(*) FROM balance_transaction WHERE net <> amount - fee") == 0
    assert scalar(oltp, "SELECT count(DISTINCT status) FROM charge") >= 5
    assert scalar(oltp, "SELECT count(*) FROM dispute WHERE reason = 'fraudulent'") > 0
    assert scalar(oltp, "SELECT count(*) FROM payout") > 0

    # No plaintext personal data or card numbers in a raw read.
    emails = {c.identity.email for chunk in TrafficGenerator(config, merchants, _currencies(oltp)).chunks()
              for c in chunk.customers}
    merchant_emails = {m.kyc_email for m in generate_merchants(25, 3)}
    tables = [(oltp, "customer"), (oltp, "payment_method"), (oltp, "charge"), (ref, "merchant")]
    for conn, table in tables:
        for row in _rows(conn, sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))):
            for value in row:
                if isinstance(value, memoryview):
                    text = bytes(value).decode("latin-1")
                    assert not any(hit in emails | merchant_emails for _kind, hit in find_pii(text))
                elif isinstance(value, str):
                    assert not [hit for hit in find_pii(value) if hit[0] in {"email", "pan", "phone"}], value
                    assert value not in emails | merchant_emails
                text = bytes(value).decode("latin-1") if isinstance(value, memoryview) else str(value)
                assert not any(pan in text for pan in pans[:200])

    # Decrypting a stored email with the customer's data key returns the generated email.
    customer_id, blob = _rows(oltp, "SELECT customer_id, email_enc FROM customer ORDER BY customer_id LIMIT 1")[0]

    def lookup(key_id):
        return default_keystore().wrapped("customer", key_id)

    email = DataKeyResolver(lookup).decrypt(bytes(blob), table="customer", column="email", pk=customer_id)
    assert email in emails

    # Rerunning the same batch adds nothing.
    totals = scalar(oltp, "SELECT (SELECT count(*) FROM charge) + (SELECT count(*) FROM balance_transaction)")
    rerun = load_traffic(oltp, config, merchants, progress=False)
    assert rerun.skipped
    assert scalar(oltp, "SELECT (SELECT count(*) FROM charge) + (SELECT count(*) FROM balance_transaction)") == totals


def test_worker_processes_load_the_same_rows_as_one_process(stack, admin_connect, fresh_database, databases):
    ref, oltp = databases
    second = admin_connect(fresh_database(prefix="gen_oltp"))
    apply_migrations(second, "oltp")
    sync_reference(ref, second)
    merchants = load_merchant_profiles(ref)
    config = TrafficConfig(payments=2500, start=START, days=3, seed=12, chunk_size=500)
    in_process = load_traffic(oltp, config, merchants, progress=False, workers=0)
    in_workers = load_traffic(second, config, merchants, progress=False, workers=2)
    assert in_process.rows == in_workers.rows and in_workers.rows["charge"] == 2500
    plain = {
        "customer": "SELECT customer_id, merchant_id, country_code, created_at FROM customer ORDER BY 1",
        "payment_method": "SELECT * FROM payment_method ORDER BY 1",
        "payment_intent": "SELECT * FROM payment_intent ORDER BY 1",
        # updated_at of a charge whose status moved is the load's now() (set by a trigger).
        "charge": "SELECT charge_id, payment_intent_id, payment_method_id, amount, currency_code, status, "
                  "failure_code, captured, ip_address, device_id, session_id, created_at FROM charge ORDER BY 1",
        "refund": "SELECT * FROM refund ORDER BY 1",
        "dispute": "SELECT * FROM dispute ORDER BY 1",
        "payout": "SELECT * FROM payout ORDER BY 1",
        "balance_transaction": "SELECT * FROM balance_transaction ORDER BY 1",
    }
    for table, query in plain.items():
        assert _rows(oltp, query) == _rows(second, query), table

    def emails(conn):
        resolver = DataKeyResolver(lambda key_id: default_keystore().wrapped("customer", key_id))
        return [resolver.decrypt(bytes(blob), table="customer", column="email", pk=customer_id)
                for customer_id, blob in _rows(conn, "SELECT customer_id, email_enc FROM customer ORDER BY 1")]

    assert emails(oltp) == emails(second)
    assert load_traffic(second, config, merchants, progress=False, workers=2).skipped
    with pytest.raises(GeneratorError, match="workers"):
        load_traffic(second, TrafficConfig(payments=10, start=START, seed=99), merchants, progress=False,
                     workers=-2)
    assert scalar(second, "SELECT count(*) FROM charge") == 2500


def test_a_merchant_missing_from_the_replica_rolls_the_batch_back(databases):
    _ref, oltp = databases
    ghost = MerchantProfile(999_999, "5411", "US", "USD")
    config = TrafficConfig(payments=200, start=START, days=1, seed=5, chunk_size=100)
    with pytest.raises(psycopg2.errors.ForeignKeyViolation):
        load_traffic(oltp, config, [ghost], progress=False)
    assert scalar(oltp, "SELECT count(*) FROM customer") == 0
    assert scalar(oltp, "SELECT count(*) FROM payment_method") == 0


def _rows(conn, query, params=None):
    with conn.cursor() as cursor:
        cursor.execute(query, params)
        rows = cursor.fetchall()
    conn.rollback()
    return rows


def _currencies(conn):
    return dict(_rows(conn, "SELECT currency_code, minor_units FROM currency_ref"))
