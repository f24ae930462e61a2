"""The example queries in include/nosql/queries on a small dataset written through the Mongo sink."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from paydata import nosql
from paydata.cdc.model import CapturedChange, Position
from paydata.cdc.sinks.mongo import MongoSink

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, tzinfo=UTC)
ALICE = "tok_k1_" + "a" * 32
BOB = "tok_k1_" + "b" * 32


def _change(table, position, key, row, source="oltp", kind="insert"):
    return CapturedChange(source, table, kind, Position(*position), T0, key, row)


@pytest.fixture
def dataset(mongo_db):
    sink = MongoSink(lambda: mongo_db)
    sink.prepare([])
    merchants = [(1, "FR"), (2, "FR"), (3, "DE")]
    sink.apply("reference", [
        _change("merchant", (1, i), {"merchant_id": m}, {"merchant_id": m, "mcc": "5411", "country_code": c,
                "risk_tier_code": "low", "payout_schedule": "daily"}, source="reference")
        for i, (m, c) in enumerate(merchants)
    ])
    # charge id, merchant, customer, device, day, disputed
    payments = [(10, 1, ALICE, "dev-a", 1, True), (11, 1, ALICE, "dev-a", 3, False), (12, 2, BOB, "dev-b", 2, False),
                (13, 3, BOB, "dev-a", 4, True), (14, 3, ALICE, "dev-c", 5, False)]
    changes = []
    for n, (charge_id, merchant, customer, device, day, disputed) in enumerate(payments):
        created = datetime(2024, 3, day, tzinfo=UTC)
        changes.append(_change("payment_intent", (10, 3 * n), {"payment_intent_id": charge_id},
                               {"payment_intent_id": charge_id, "merchant_id": merchant, "customer_id": customer}))
        changes.append(_change("charge", (10, 3 * n + 1), {"charge_id": charge_id},
                               {"charge_id": charge_id, "payment_intent_id": charge_id, "amount": 100 * day,
                                "currency_code": "EUR", "status": "disputed" if disputed else "succeeded",
                                "device_id": device, "session_id": f"s-{charge_id}", "created_at": created}))
        if disputed:
            changes.append(_change("dispute", (10, 3 * n + 2), {"dispute_id": charge_id},
                                   {"dispute_id": charge_id, "charge_id": charge_id, "amount": 100, "status": "needs_response",
                                    "reason": "fraudulent", "opened_at": created}))
    changes.append(_change("refund", (11, 0), {"refund_id": 1}, {"refund_id": 1, "charge_id": 11, "amount": 50, "status": "succeeded"}))
    changes.append(_change("charge", (11, 1), {"charge_id": 14}, None, kind="delete"))
    sink.apply("oltp", changes)
    return mongo_db


def test_customer_payment_timeline(dataset):
    rows = nosql.run_query(dataset, "customer_payment_timeline", customer=ALICE)
    assert [r["charge_id"] for r in rows] == [10, 11]  # 14 is deleted
    assert rows[0]["disputes"] == [{"dispute_id": 10, "amount": 100, "status": "needs_response", "reason": "fraudulent"}]
    assert rows[1]["refunds"] == [{"refund_id": 1, "amount": 50, "status": "succeeded"}]
    assert nosql.run_query(dataset, "customer_payment_timeline", customer="tok_k1_" + "z" * 32) == []


def test_merchant_dispute_rate_by_country(dataset):
    rows = nosql.run_query(dataset, "merchant_dispute_rate_by_country", since=datetime(2024, 1, 1, tzinfo=UTC))
    assert rows == [
        {"country_code": "DE", "merchants": 1, "payments": 1, "disputed": 1, "dispute_rate": 1.0},
        {"country_code": "FR", "merchants": 2, "payments": 3, "disputed": 1, "dispute_rate": pytest.approx(1 / 3)},
    ]
    later = nosql.run_query(dataset, "merchant_dispute_rate_by_country", since=datetime(2024, 3, 2, tzinfo=UTC))
    assert [(r["country_code"], r["payments"], r["disputed"]) for r in later] == [("DE", 1, 1), ("FR", 2, 0)]


def test_payments_by_device(dataset):
    rows = nosql.run_query(dataset, "payments_by_device", device_id="dev-a")
    assert [(r["charge_id"], r["customer"], r["session_id"]) for r in rows] == [(13, BOB, "s-13"), (11, ALICE, "s-11"), (10, ALICE, "s-10")]
    assert nosql.run_query(dataset, "payments_by_device", device_id="dev-c") == []  # deleted payment


def test_bad_query_calls(dataset):
    with pytest.raises(nosql.NoSqlDefinitionError, match="missing"):
        nosql.run_query(dataset, "payments_by_device")
    with pytest.raises(nosql.NoSqlDefinitionError, match="unexpected"):
        nosql.run_query(dataset, "payments_by_device", device_id="x", limit=3)
    with pytest.raises(nosql.NoSqlDefinitionError, match="must be string"):
        nosql.run_query(dataset, "payments_by_device", device_id={"$ne": None})
    with pytest.raises(nosql.NoSqlDefinitionError, match="timezone-aware"):
        nosql.run_query(dataset, "merchant_dispute_rate_by_country", since=datetime(2024, 1, 1))


def test_apply_definitions_twice_is_a_no_op_and_repairs_changed_index(mongo_db):
    assert nosql.apply_definitions(mongo_db)
    assert nosql.apply_definitions(mongo_db) == []
    mongo_db.payments.drop_index("payments_device")
    mongo_db.payments.create_index([("device.device_id", -1)], name="payments_device")
    assert nosql.apply_definitions(mongo_db) == ["dropped changed index payments.payments_device",
                                                 "created index payments.payments_device"]
    assert mongo_db.payments.index_information()["payments_device"]["key"] == [("device.device_id", 1)]


def test_validator_rejects_raw_customer_id(mongo_db):
    from pymongo.errors import WriteError

    nosql.apply_definitions(mongo_db)
    with pytest.raises(WriteError):
        mongo_db.customers.insert_one({"_id": "42", "_pos": {"lsn": 1, "idx": 0}, "deleted": False, "erased": False})
