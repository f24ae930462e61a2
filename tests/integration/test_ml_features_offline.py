"""Point-in-time features in the warehouse: leakage, agreement with a naive reference and with a
window-function formulation, training set versions (real Postgres)."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from ml.features.definitions import load_definitions
from ml.features.offline import build_features, build_training_set, load_training_frame
from ml.features.sql_builder import feature_names
from paydata.sql import load_sql
from paydata.warehouse import build

pytestmark = pytest.mark.integration

UTC = dt.UTC
DEFINITIONS = load_definitions()
T0 = dt.datetime(2026, 1, 5, 12, tzinfo=UTC)


def query(conn, statement, params=None):
    with conn.cursor() as cursor:
        cursor.execute(statement, params)
        rows = cursor.fetchall()
    conn.rollback()
    return rows


def attempt(staging, charge_id, customer, card, when, amount=1000, *, status="succeeded", device=None,
            ip=None, merchant=1):
    staging.put("oltp", "payment_intent", ["payment_intent_id"],
                {"payment_intent_id": charge_id, "merchant_id": merchant, "customer_id": customer,
                 "amount": amount, "currency_code": "USD", "status": "processing", "created_at": when})
    staging.put("oltp", "charge", ["charge_id"],
                {"charge_id": charge_id, "payment_intent_id": charge_id, "payment_method_id": card,
                 "amount": amount, "currency_code": "USD", "status": status,
                 "failure_code": "card_declined" if status == "failed" else None,
                 "captured": status == "succeeded", "created_at": when, "updated_at": when,
                 "ip_address": ip or f"tok_ip_{customer}", "device_id": device or f"tok_dev_{customer}",
                 "session_id": f"tok_ses_{charge_id}"})
    if status == "succeeded":
        staging.ledger(charge_id, merchant, "charge", amount, when, currency="USD", fee=30, source_id=charge_id)


def dispute(staging, dispute_id, charge_id, opened_at, reason="fraudulent"):
    staging.put("oltp", "dispute", ["dispute_id"],
                {"dispute_id": dispute_id, "charge_id": charge_id, "amount": 100, "reason": reason,
                 "status": "needs_response", "opened_at": opened_at, "updated_at": opened_at},
                commit_time=opened_at)


def seed(staging):
    staging.reference_data()
    staging.merchant(1, "low", dt.datetime(2026, 1, 1, tzinfo=UTC), op="S", mcc="7995")
    staging.merchant(1, "high", T0 + dt.timedelta(hours=2))
    for token, cards in (("tok_a", (10, 11)), ("tok_b", (20,))):
        staging.customer(token, 1)
        for card in cards:
            staging.card(card, token)
    minutes = dt.timedelta(minutes=1)
    attempt(staging, 1, "tok_a", 10, T0 - dt.timedelta(days=3), 5000)
    dispute(staging, 900, 1, T0 - dt.timedelta(days=1))     # loaded before the charges below
    attempt(staging, 2, "tok_a", 10, T0 - 50 * minutes, 1200, status="failed")
    attempt(staging, 3, "tok_a", 11, T0 - 10 * minutes, 2500, device="tok_dev_shared")
    attempt(staging, 4, "tok_a", 10, T0, 9000)
    attempt(staging, 5, "tok_b", 20, T0, 700, device="tok_dev_shared")   # same instant as 4
    attempt(staging, 6, "tok_b", 20, T0 + 3 * minutes, 800, device="tok_dev_shared", ip="tok_ip_tok_a")


def features(conn, table=DEFINITIONS.offline_table):
    names = feature_names(DEFINITIONS)
    rows = query(conn, f"SELECT charge_id, {', '.join(names)} FROM features.{table} ORDER BY charge_id")
    return {row[0]: dict(zip(names, row[1:], strict=True)) for row in rows}


def test_features_of_each_charge_use_only_what_came_strictly_before_it(warehouse, staging):
    seed(staging)
    build(warehouse)
    report = build_features(warehouse, DEFINITIONS)
    assert report["charge_events"] == 6 and report["dispute_events"] == 1 and report["feature_rows"] == 6
    got = features(warehouse)
    four = got[4]
    # before charge 4 (T0): charge 1 (3 days earlier), the decline 2 (50 min), charge 3 (10 min)
    assert (four["customer_charges_1h"], four["customer_charges_24h"], four["customer_charges_7d"]) == (2, 2, 3)
    assert four["customer_amount_usd_1h"] == pytest.approx(37.0)
    assert four["customer_declines_24h"] == 1
    assert four["customer_authorised_amount_avg_30d"] == pytest.approx(37.5)   # charges 1 and 3
    assert four["customer_devices_24h"] == 2
    assert four["customer_seconds_since_last_charge"] == pytest.approx(600.0)
    assert four["customer_fraud_disputes_90d"] == 1                             # opened a day before
    assert (four["card_charges_1h"], four["card_declines_1h"], four["card_charges_7d"]) == (1, 1, 2)
    assert four["customer_device_charges_30d"] == 2                              # charges 1 and 2
    assert four["merchant_risk_tier"] == 0 and four["merchant_mcc_high_risk"] == 1
    assert four["hour_of_day"] == 12 and four["amount_usd"] == pytest.approx(90.0)
    # ties: charge 5 happens at the same instant as 4 and neither sees the other
    assert got[5]["device_charges_24h"] == 1 and got[5]["device_cards_24h"] == 1   # only charge 3
    # charge 6, 3 minutes after T0 (before the tier change at T0 + 2h), sees 4 and 5
    assert got[6]["ip_charges_24h"] == 3 and got[6]["ip_cards_24h"] == 2     # 2, 3, 4 (1 is 3 days old)
    assert got[6]["device_cards_24h"] == 2 and got[6]["merchant_risk_tier"] == 0
    first = got[1]
    assert first["customer_charges_7d"] == 0 and math.isnan(first["customer_seconds_since_last_charge"] or math.nan)
