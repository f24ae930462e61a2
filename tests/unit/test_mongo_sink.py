"""Document building of the Mongo sink: pure functions, no server."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from bson.decimal128 import Decimal128

from paydata import nosql
from paydata.cdc.model import CapturedChange, Position
from paydata.cdc.sinks import mongo
from paydata.cdc.sinks.mongo import (
    MERCHANT_HISTORY_LIMIT,
    PiiInDocument,
    UnsupportedChange,
    assert_no_pii,
    bson_value,
    merge_element,
    merge_top_level,
    pii_findings,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
CUSTOMER = "tok_k1_" + "a" * 32
IP_TOKEN = "tok_k1_" + "b" * 32


def change(table, kind, position, key, row=None, *, source="oltp", unchanged=frozenset()):
    return CapturedChange(source, table, kind, Position(*position), T0, key, row, unchanged)


def charge_row(**overrides):
    row = {
        "charge_id": 1, "payment_intent_id": 3, "payment_method_id": 4, "amount": 1250,
        "currency_code": "EUR", "status": "succeeded", "failure_code": None, "failure_message": None,
        "captured": True, "ip_address": IP_TOKEN, "device_id": "dev-1", "session_id": "sess-1",
        "created_at": T0, "updated_at": T0,
    }
    return {**row, **overrides}


def merchant_row(**overrides):
    row = {
        "merchant_id": 9, "legal_name": "Acme SARL", "mcc": "5411", "country_code": "FR",
        "default_currency_code": "EUR", "payout_schedule": "daily", "risk_tier_code": "low",
        "status": "active", "created_at": T0, "updated_at": T0,
    }
    return {**row, **overrides}


def test_charge_insert_builds_payment_with_embedded_device_and_session_reference():
    doc = merge_top_level(None, change("charge", "insert", (100, 0), {"charge_id": 1}, charge_row()))
    assert doc["_id"] == 1
    assert doc["device"] == {"device_id": "dev-1", "ip_token": IP_TOKEN}
    assert doc["session_id"] == "sess-1"
    assert doc["currency"] == "EUR" and doc["amount"] == 1250
    assert doc["_pos"] == {"lsn": 100, "idx": 0}
    assert doc["deleted"] is False
    assert doc["refunds"] == [] and doc["disputes"] == []
    # Free text is never mapped, even if the manifest keeps it.
    assert "failure_message" not in doc and "ip_address" not in doc


def test_older_or_equal_change_is_not_applied():
    current = merge_top_level(None, change("charge", "insert", (100, 1), {"charge_id": 1}, charge_row()))
    same = change("charge", "update", (100, 1), {"charge_id": 1}, charge_row(status="refunded"))
    older = change("charge", "update", (99, 5), {"charge_id": 1}, charge_row(status="refunded"))
    assert merge_top_level(current, same) is None
    assert merge_top_level(current, older) is None
    newer = merge_top_level(current, change("charge", "update", (100, 2), {"charge_id": 1}, charge_row(status="refunded")))
    assert newer["status"] == "refunded" and newer["_pos"] == {"lsn": 100, "idx": 2}
    assert current["status"] == "succeeded", "merge must not modify its input"


def test_unchanged_toast_columns_keep_stored_values():
    current = merge_top_level(None, change("charge", "insert", (1, 0), {"charge_id": 1}, charge_row()))
    row = charge_row(status="refunded")
    del row["session_id"], row["device_id"]
    updated = merge_top_level(
        current, change("charge", "update", (2, 0), {"charge_id": 1}, row, unchanged=frozenset({"session_id", "device_id"}))
    )
    assert updated["session_id"] == "sess-1"
    assert updated["device"]["device_id"] == "dev-1"
    assert updated["status"] == "refunded"


def test_a_key_change_takes_unchanged_fields_from_the_old_keys_document():
    old = merge_top_level(None, change("charge", "insert", (1, 0), {"charge_id": 1}, charge_row()))
    row = charge_row(charge_id=2, status="refunded")
    del row["session_id"], row["device_id"]
    moved = change("charge", "update", (2, 0), {"charge_id": 2}, row, unchanged=frozenset({"session_id", "device_id"}))
    moved.moved_from = {"charge_id": 1}
    assert mongo.moved_document_id(moved) == 1
    new = merge_top_level(None, moved, old)
    assert new["_id"] == 2 and new["status"] == "refunded"
    assert new["session_id"] == "sess-1" and new["device"] == {"device_id": "dev-1", "ip_token": IP_TOKEN}
    # Without the old document the fields are simply absent, never taken from elsewhere.
    assert "session_id" not in merge_top_level(None, moved)


def test_delete_leaves_tombstone_with_last_values_and_new_position():
    current = merge_top_level(None, change("charge", "insert", (1, 0), {"charge_id": 1}, charge_row()))
    tomb = merge_top_level(current, change("charge", "delete", (5, 0), {"charge_id": 1}))
    assert tomb["deleted"] is True and tomb["_pos"] == {"lsn": 5, "idx": 0} and tomb["amount"] == 1250
    # An older insert replayed after the delete cannot resurrect it.
    assert merge_top_level(tomb, change("charge", "insert", (1, 0), {"charge_id": 1}, charge_row())) is None


def test_customer_document_keyed_by_token_without_personal_data():
    row = {"customer_id": CUSTOMER, "merchant_id": 9, "country_code": "FR", "created_at": T0,
           "updated_at": T0, "erased_at": None, "email_enc": b"x" * 40}
    doc = merge_top_level(None, change("customer", "insert", (1, 0), {"customer_id": CUSTOMER}, row))
    assert doc["_id"] == CUSTOMER and doc["erased"] is False and doc["country_code"] == "FR"
    assert "email_enc" not in doc
    erased = merge_top_level(doc, change("customer", "update", (2, 0), {"customer_id": CUSTOMER}, {**row, "erased_at": T0}))
    assert erased["erased"] is True


def test_raw_customer_id_is_rejected():
    with pytest.raises(UnsupportedChange, match="not a paydata token"):
        merge_top_level(None, change("customer", "insert", (1, 0), {"customer_id": 42}, {"customer_id": 42}))
    with pytest.raises(UnsupportedChange, match="not a paydata token"):
        merge_top_level(None, change("charge", "insert", (1, 0), {"charge_id": 1}, charge_row(ip_address="10.0.0.1")))


def test_merchant_history_records_attribute_changes_and_is_capped():
    doc = merge_top_level(None, change("merchant", "snapshot", (1, -1), {"merchant_id": 9}, merchant_row(), source="reference"))
    assert [h["risk_tier_code"] for h in doc["history"]] == ["low"]
    same = merge_top_level(doc, change("merchant", "update", (2, 0), {"merchant_id": 9}, merchant_row(status="restricted"), source="reference"))
    assert len(same["history"]) == 1, "a change of an untracked attribute adds no history"
    for step in range(MERCHANT_HISTORY_LIMIT + 3):
        doc = merge_top_level(
            doc, change("merchant", "update", (10 + step, 0), {"merchant_id": 9}, merchant_row(mcc=f"{5000 + step}"), source="reference")
        )
    assert len(doc["history"]) == MERCHANT_HISTORY_LIMIT
    assert doc["history"][-1]["mcc"] == doc["mcc"] == f"{5000 + MERCHANT_HISTORY_LIMIT + 2}"
    assert doc["history"][-1]["valid_from"] == T0


def test_history_limit_matches_validator():
    validator = nosql.load_definitions()["merchant_profiles"]["validator"]["$jsonSchema"]
    assert validator["properties"]["history"]["maxItems"] == MERCHANT_HISTORY_LIMIT


def test_refund_element_guard_and_tombstone():
    row = {"refund_id": 7, "charge_id": 1, "amount": 50, "status": "pending", "reason": None, "created_at": T0, "updated_at": T0}
    element = merge_element(None, change("refund", "insert", (3, 0), {"refund_id": 7}, row))
    assert element == {"refund_id": 7, "amount": 50, "status": "pending", "reason": None, "created_at": T0,
                       "updated_at": T0, "deleted": False, "_pos": {"lsn": 3, "idx": 0}}
    assert merge_element(element, change("refund", "update", (2, 0), {"refund_id": 7}, {**row, "status": "failed"})) is None
    gone = merge_element(element, change("refund", "delete", (4, 0), {"refund_id": 7}))
    assert gone["deleted"] is True and gone["amount"] == 50


def test_unknown_table_and_kind_are_rejected():
    with pytest.raises(UnsupportedChange, match="no document model for oltp.payout"):
        merge_top_level(None, change("payout", "insert", (1, 0), {"payout_id": 1}, {"payout_id": 1}))
    with pytest.raises(UnsupportedChange, match="truncate"):
        merge_top_level(None, change("charge", "truncate", (1, 0), {}))
    with pytest.raises(UnsupportedChange, match="no value for key"):
        merge_top_level(None, change("charge", "insert", (1, 0), {}, {"amount": 1}))


def test_lsn_outside_int64_is_rejected():
    with pytest.raises(UnsupportedChange, match="int64"):
        merge_top_level(None, change("charge", "insert", (2**63, 0), {"charge_id": 1}, charge_row()))


def test_bson_value_conversions():
    assert bson_value(Decimal("1.50")) == Decimal128("1.50")
    assert bson_value(date(2024, 1, 2)) == datetime(2024, 1, 2, tzinfo=UTC)
    assert bson_value(datetime(2024, 1, 2, 3)).tzinfo is UTC
    assert bson_value({"a": [Decimal("2")]}) == {"a": [Decimal128("2")]}


@pytest.mark.parametrize(
    ("value", "kind"),
    [("jane.doe@example.com", "email"), ("4111 1111 1111 1111", "pan"), ("192.168.10.4", "ipv4"), ("2001:db8::1", "ipv6")],
)
def test_pii_guard_finds_nested_personal_data(value, kind):
    document = {"_id": 1, "device": {"device_id": value}, "refunds": [{"reason": "ok"}]}
    assert pii_findings(document) == [("device.device_id", kind)]
    with pytest.raises(PiiInDocument) as raised:
        assert_no_pii("payments", [document])
    assert value not in str(raised.value), "the error must not repeat the personal data"
    assert "device.device_id" in str(raised.value)


def test_pii_guard_accepts_tokens_and_ordinary_values():
    doc = merge_top_level(None, change("charge", "insert", (100, 0), {"charge_id": 1}, charge_row()))
    assert pii_findings(doc) == []
    assert pii_findings({"order": "ORD-4111111111111111", "session": "sess_9f8e7d"}) == []


def test_sink_rejects_batches_before_touching_the_database():
    sink = mongo.MongoSink(lambda: pytest.fail("the database must not be opened for an invalid batch"))
    with pytest.raises(UnsupportedChange, match="contains a change of 'reference'"):
        sink.apply("oltp", [change("merchant", "insert", (1, 0), {"merchant_id": 1}, merchant_row(), source="reference")])
    with pytest.raises(UnsupportedChange, match="no document model"):
        sink.apply("oltp", [change("payout", "insert", (1, 0), {"payout_id": 1}, {})])


def test_query_files_bind_parameters_structurally():
    for name in nosql.query_names():
        query = nosql.load_query(name)
        assert query["params"], name
    bound = nosql.bind([{"$match": {"customer": {"$param": "customer"}}}], {"customer": {"$ne": None}})
    assert bound == [{"$match": {"customer": {"$ne": None}}}]
    with pytest.raises(nosql.NoSqlDefinitionError, match="does not declare"):
        nosql.bind([{"$param": "other"}], {})


def test_definition_file_errors_are_reported(tmp_path):
    bad = tmp_path / "collections.json"
    bad.write_text(json.dumps({"collections": {"x": {"indexes": [{"name": "i", "keys": [["a", 2]]}]}}}))
    with pytest.raises(nosql.NoSqlDefinitionError, match=r"not \[field, 1\|-1\]"):
        nosql.load_definitions(bad)
    bad.write_text("{")
    with pytest.raises(nosql.NoSqlDefinitionError, match="cannot read"):
        nosql.load_definitions(bad)
    with pytest.raises(nosql.NoSqlDefinitionError, match="unknown query"):
        nosql.load_query("drop_everything")


def _internal_error(message: str):
    from pymongo.errors import OperationFailure

    return OperationFailure(message, code=1, details={"ok": 0, "errmsg": message, "code": 1})


def test_unlabelled_commit_conflict_is_retried_and_other_errors_are_not():
    from paydata.cdc.sinks.mongo.transactions import run_transaction_retrying_conflicts

    calls = []

    def conflicts_twice():
        calls.append(1)
        if len(calls) < 3:
            raise _internal_error("WT_ROLLBACK: conflict between concurrent operations")
        return "applied"

    assert run_transaction_retrying_conflicts(conflicts_twice, pause=0) == "applied"
    assert len(calls) == 3

    other = []

    def fails_otherwise():
        other.append(1)
        raise _internal_error("disk full")

    with pytest.raises(Exception, match="disk full"):
        run_transaction_retrying_conflicts(fails_otherwise, pause=0)
    assert len(other) == 1

    persistent = []

    def always_conflicts():
        persistent.append(1)
        raise _internal_error("conflict between concurrent operations")

    with pytest.raises(Exception, match="conflict between concurrent operations"):
        run_transaction_retrying_conflicts(always_conflicts, attempts=3, pause=0)
    assert len(persistent) == 3
