"""MongoSink against the local SecantusDB (real MongoDB wire protocol), one unique database per test."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from paydata.cdc.model import CapturedChange, Position, TableSpec
from paydata.cdc.sinks.mongo import MongoSink, PiiInDocument, UnsupportedChange

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
CUSTOMER = "tok_k1_" + "c" * 32
IP_TOKEN = "tok_k1_" + "d" * 32


def change(table, kind, position, key, row=None, *, source="oltp", unchanged=frozenset()):
    return CapturedChange(source, table, kind, Position(*position), T0, key, row, unchanged)


def intent(position, intent_id=3, customer=CUSTOMER, merchant_id=9):
    row = {"payment_intent_id": intent_id, "merchant_id": merchant_id, "customer_id": customer, "amount": 1250,
           "currency_code": "EUR", "status": "succeeded", "created_at": T0, "updated_at": T0}
    return change("payment_intent", "insert", position, {"payment_intent_id": intent_id}, row)


def charge(position, charge_id=1, kind="insert", unchanged=frozenset(), **overrides):
    row = {"charge_id": charge_id, "payment_intent_id": 3, "payment_method_id": 4, "amount": 1250,
           "currency_code": "EUR", "status": "succeeded", "failure_code": None, "captured": True,
           "ip_address": IP_TOKEN, "device_id": "dev-1", "session_id": "sess-1", "created_at": T0,
           "updated_at": T0, **overrides}
    for column in unchanged:
        del row[column]
    return change("charge", kind, position, {"charge_id": charge_id}, row, unchanged=unchanged)


def refund(position, refund_id=7, charge_id=1, kind="insert", **overrides):
    row = {"refund_id": refund_id, "charge_id": charge_id, "amount": 50, "status": "pending", "reason": None,
           "created_at": T0, "updated_at": T0, **overrides}
    return change("refund", kind, position, {"refund_id": refund_id}, row if kind != "delete" else None)


def dump(db):
    return {name: sorted(db[name].find(), key=lambda d: str(d["_id"])) for name in sorted(db.list_collection_names())}


@pytest.fixture
def sink(mongo_db):
    created = MongoSink(lambda: mongo_db)
    created.prepare([])
    return created


def test_prepare_creates_indexes_and_is_idempotent(mongo_db):
    sink = MongoSink(lambda: mongo_db)
    specs = [TableSpec("oltp", "charge", ("charge_id",), {"charge_id": "bigint"}, ("warehouse", "mongo")),
             TableSpec("oltp", "payment_intent", ("payment_intent_id",), {}, ("mongo",))]
    sink.prepare(specs)
    indexes = {info["name"] for info in mongo_db.payments.list_indexes()}
    assert {"payments_customer_created", "payments_device", "payments_refund_id"} <= indexes
    before = {name: list(mongo_db[name].list_indexes()) for name in mongo_db.list_collection_names()}
    sink.prepare(specs)
    assert {name: list(mongo_db[name].list_indexes()) for name in mongo_db.list_collection_names()} == before
    assert mongo_db.payments.options()["validator"]["$jsonSchema"]["required"] == ["_id", "refunds", "disputes"]


def test_prepare_rejects_tables_without_document_model(mongo_db):
    sink = MongoSink(lambda: mongo_db)
    with pytest.raises(UnsupportedChange, match="oltp.payout"):
        sink.prepare([TableSpec("oltp", "payout", ("payout_id",), {}, ("mongo",))])
    with pytest.raises(UnsupportedChange, match="key"):
        sink.prepare([TableSpec("oltp", "charge", ("id",), {}, ("mongo",))])


def test_insert_update_delete_truncate_flow(sink, mongo_db):
    assert sink.applied_position("oltp") == Position.zero()
    assert sink.apply("oltp", [intent((10, 0)), charge((10, 1)), charge((10, 2), charge_id=2)]) == Position(10, 2)
    payment = mongo_db.payments.find_one({"_id": 1})
    assert payment["customer"] == CUSTOMER and payment["merchant_id"] == 9
    assert payment["device"] == {"device_id": "dev-1", "ip_token": IP_TOKEN}

    sink.apply("oltp", [charge((11, 0), kind="update", status="refunded"), change("charge", "delete", (11, 1), {"charge_id": 2})])
    assert mongo_db.payments.find_one({"_id": 1})["status"] == "refunded"
    tomb = mongo_db.payments.find_one({"_id": 2})
    assert tomb["deleted"] is True and tomb["_pos"] == {"lsn": 11, "idx": 1}
    assert sink.applied_position("oltp") == Position(11, 1)

    # The intent gets its customer later: payments of that intent follow.
    other = "tok_k1_" + "e" * 32
    sink.apply("oltp", [intent((12, 0), customer=other)])
    assert mongo_db.payments.find_one({"_id": 1})["customer"] == other

    sink.apply("oltp", [change("charge", "truncate", (13, 0), {}), charge((13, 1), charge_id=5)])
    assert [d["_id"] for d in mongo_db.payments.find()] == [5]
    assert sink.applied_position("oltp") == Position(13, 1)
    # An older change of the truncated table replayed later is ignored by the watermark.
    sink.apply("oltp", [charge((12, 5), charge_id=6)])
    assert mongo_db.payments.find_one({"_id": 6}) is None


def test_replaying_a_batch_changes_nothing(sink, mongo_db):
    batch = [intent((20, 0)), charge((20, 1)), refund((20, 2)), charge((21, 0), kind="update", status="refunded"),
             change("dispute", "insert", (21, 1), {"dispute_id": 8},
                    {"dispute_id": 8, "charge_id": 1, "amount": 1250, "reason": "fraudulent", "status": "needs_response",
                     "opened_at": T0, "closed_at": None, "updated_at": T0})]
    sink.apply("oltp", batch)
    before = dump(mongo_db)
    assert sink.apply("oltp", batch) == Position(21, 1)
    assert dump(mongo_db) == before
    # Same batch with the offset lost: the per-document guards alone keep it unchanged.
    mongo_db.cdc_offsets.delete_many({})
    sink.apply("oltp", batch)
    after = dump(mongo_db)
    assert {k: v for k, v in after.items() if k != "cdc_offsets"} == {k: v for k, v in before.items() if k != "cdc_offsets"}


def test_out_of_order_older_change_is_ignored(sink, mongo_db):
    sink.apply("oltp", [charge((30, 0), status="refunded"), refund((30, 1), status="succeeded")])
    mongo_db.cdc_offsets.delete_many({})  # force the per-document guard, not the offset, to decide
    sink.apply("oltp", [charge((29, 0), status="pending"), refund((29, 5), status="pending")])
    payment = mongo_db.payments.find_one({"_id": 1})
    assert payment["status"] == "refunded" and payment["_pos"] == {"lsn": 30, "idx": 0}
    assert payment["refunds"][0]["status"] == "succeeded"


def test_unchanged_toast_keeps_fields(sink, mongo_db):
    sink.apply("oltp", [charge((40, 0))])
    sink.apply("oltp", [charge((41, 0), kind="update", status="refunded", unchanged=frozenset({"session_id", "device_id"}))])
    payment = mongo_db.payments.find_one({"_id": 1})
    assert payment["session_id"] == "sess-1" and payment["device"]["device_id"] == "dev-1"
    assert payment["status"] == "refunded"


def test_refund_before_its_charge_creates_stub_then_filled(sink, mongo_db):
    sink.apply("oltp", [refund((50, 0), charge_id=77)])
    stub = mongo_db.payments.find_one({"_id": 77})
    assert "_pos" not in stub and [r["refund_id"] for r in stub["refunds"]] == [7]
    sink.apply("oltp", [intent((51, 0)), charge((51, 1), charge_id=77)])
    payment = mongo_db.payments.find_one({"_id": 77})
    assert payment["amount"] == 1250 and payment["customer"] == CUSTOMER
    assert [r["refund_id"] for r in payment["refunds"]] == [7]
    # Deleting the refund (key only, as pgoutput sends it) finds it through the element index.
    sink.apply("oltp", [refund((52, 0), kind="delete")])
    assert mongo_db.payments.find_one({"_id": 77})["refunds"][0]["deleted"] is True


def test_truncate_of_refunds_keeps_newer_elements_and_drops_empty_stubs(sink, mongo_db):
    sink.apply("oltp", [charge((60, 0)), refund((60, 1)), refund((60, 2), refund_id=8, charge_id=99)])
    sink.apply("oltp", [change("refund", "truncate", (61, 0), {}), refund((61, 1), refund_id=9)])
    assert [r["refund_id"] for r in mongo_db.payments.find_one({"_id": 1})["refunds"]] == [9]
    assert mongo_db.payments.find_one({"_id": 99}) is None


def test_pii_guard_rejects_raw_email_and_writes_nothing(sink, mongo_db):
    sink.apply("oltp", [charge((70, 0))])
    before = dump(mongo_db)
    with pytest.raises(PiiInDocument, match="device.device_id"):
        sink.apply("oltp", [charge((71, 0), charge_id=2), charge((71, 1), kind="update", device_id="jane@example.com")])
    assert dump(mongo_db) == before
    assert sink.applied_position("oltp") == Position(70, 0)


def test_bad_customer_id_is_rejected_before_writing(sink, mongo_db):
    with pytest.raises(UnsupportedChange, match="not a paydata token"):
        sink.apply("oltp", [charge((80, 0)), intent((80, 1), customer="42")])
    assert mongo_db.payments.count_documents({}) == 0


def test_merchant_profiles_from_reference(sink, mongo_db):
    row = {"merchant_id": 9, "legal_name": "Acme", "mcc": "5411", "country_code": "FR", "default_currency_code": "EUR",
           "payout_schedule": "daily", "risk_tier_code": "low", "status": "active", "created_at": T0, "updated_at": T0}
    sink.apply("reference", [change("merchant", "snapshot", (5, -1), {"merchant_id": 9}, row, source="reference")])
    sink.apply("reference", [change("merchant", "update", (6, 0), {"merchant_id": 9}, {**row, "risk_tier_code": "high"},
                                    source="reference")])
    profile = mongo_db.merchant_profiles.find_one({"_id": 9})
    assert profile["risk_tier_code"] == "high"
    assert [h["risk_tier_code"] for h in profile["history"]] == ["low", "high"]
    assert sink.applied_position("reference") == Position(6, 0) and sink.applied_position("oltp") == Position.zero()
