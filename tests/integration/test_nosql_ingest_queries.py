"""The example queries over ingested landing records, joined with payments written by the CDC Mongo sink."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from paydata import nosql
from paydata.cdc.model import CapturedChange, Position
from paydata.cdc.sinks.mongo import MongoSink
from paydata.crypto import default_tokeniser
from paydata.nosql.loader import ingest_files, landing_files
from paydata.nosql.scrub import Safeguard

pytestmark = pytest.mark.integration

DAY = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
ALICE, BOB, CAROL = ("tok_k1_" + c * 32 for c in "abc")


def at(hours: float) -> dt.datetime:
    return DAY + dt.timedelta(hours=hours)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def token(value: str, domain: str) -> str:
    return default_tokeniser().tokenise(value, domain=domain)


def _session(session_id, device_id, device_type, started):
    return {"session_id": session_id, "merchant_id": 1, "started_at": iso(started),
            "ended_at": iso(started + dt.timedelta(minutes=5)), "ip": "203.0.113.7", "charge_count": 1,
            "device": {"device_id": device_id, "type": device_type}}


def _event(session_id, seq, event, started, outcome=None):
    record = {"session_id": session_id, "seq": seq, "event": event, "ts": iso(started + dt.timedelta(seconds=seq))}
    if outcome:
        record["properties"] = {"amount": 100, "currency": "EUR", "outcome": outcome}
    return record


def _log(n, hour, level, failure_code, http_status=402):
    return {"ts": iso(at(hour)), "level": level, "service": "payments-api", "event": "charge.created",
            "failure_code": failure_code, "latency_ms": 10.0, "http_status": http_status,
            "request_id": f"req_{n:016x}", "message": "x"}


def _feedback(n, merchant_id, rating):
    return {"feedback_id": f"fb_{n:016x}", "session_id": "s1", "merchant_id": merchant_id, "rating": rating,
            "channel": "app", "created_at": iso(at(20)), "text": "ok"}


@pytest.fixture
def dataset(mongo_db, tmp_path):
    nosql.apply_definitions(mongo_db)
    landing = tmp_path / "landing"
    records = {
        "sessions": [_session("s1", "dev-a", "mobile", at(9)), _session("s2", "dev-a", "mobile", at(10)),
                     _session("s3", "dev-b", "desktop", at(11)), _session("s4", "dev-b", "desktop", at(30))],
        "events": [_event("s1", 0, "page_view", at(9)), _event("s1", 11, "payment_submit", at(9), "failed"),
                   _event("s1", 12, "payment_submit", at(9), "succeeded"), _event("s2", 0, "page_view", at(10)),
                   _event("s3", 11, "payment_submit", at(11), "failed"),
                   _event("s3", 150, "payment_submit", at(11), "succeeded"),
                   _event("s4", 11, "payment_submit", at(30), "succeeded")],
        "feedback": [_feedback(1, 1, 2), _feedback(2, 1, 4), _feedback(3, 2, 1), _feedback(4, 3, 5)],
        "app_logs": [_log(1, 10.1, "ERROR", "card_declined"), _log(2, 10.5, "ERROR", "card_declined"),
                     _log(3, 10.7, "WARN", "insufficient_funds"), _log(4, 10.8, "INFO", None, 200),
                     _log(5, 11.2, "ERROR", None, 502), _log(6, 11.3, "WARN", "card_declined")],
    }
    for kind, lines in records.items():
        (landing / kind).mkdir(parents=True)
        (landing / kind / f"{kind}-q-00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    report = ingest_files(mongo_db, landing, landing_files(landing), Safeguard(default_tokeniser()))
    assert report.totals()["loaded"] == 21 and report.totals()["quarantined"] == 0

    sink = MongoSink(lambda: mongo_db)
    changes = []
    # charge id, merchant, customer, session, device, disputed
    payments = [(10, 1, ALICE, "s1", "dev-a", False), (11, 1, BOB, "s1", "dev-a", False),
                (12, 2, CAROL, "s3", "dev-b", True), (13, 2, ALICE, "s4", "dev-b", False)]
    for n, (charge_id, merchant, customer, session, device, disputed) in enumerate(payments):
        created = at(9 + n)
        changes.append(CapturedChange("oltp", "payment_intent", "insert", Position(10, 3 * n), created,
                                      {"payment_intent_id": charge_id},
                                      {"payment_intent_id": charge_id, "merchant_id": merchant, "customer_id": customer}))
        changes.append(CapturedChange("oltp", "charge", "insert", Position(10, 3 * n + 1), created, {"charge_id": charge_id},
                                      {"charge_id": charge_id, "payment_intent_id": charge_id, "amount": 100,
                                       "currency_code": "EUR", "status": "disputed" if disputed else "succeeded",
                                       "device_id": token(device, "device"), "session_id": token(session, "session"),
                                       "created_at": created}))
        if disputed:
            changes.append(CapturedChange("oltp", "dispute", "insert", Position(10, 3 * n + 2), created,
                                          {"dispute_id": charge_id},
                                          {"dispute_id": charge_id, "charge_id": charge_id, "amount": 100,
                                           "status": "needs_response", "reason": "fraudulent", "opened_at": created}))
    sink.apply("oltp", changes)
    return mongo_db


def test_session_funnel_by_device(dataset):
    rows = nosql.run_query(dataset, "session_funnel_by_device", since=DAY, until=at(24))
    assert rows == [
        {"device_type": "desktop", "sessions": 1, "sessions_with_attempt": 1, "sessions_with_success": 1,
         "attempts": 2, "successes": 1},
        {"device_type": "mobile", "sessions": 2, "sessions_with_attempt": 1, "sessions_with_success": 1,
         "attempts": 2, "successes": 1},
    ]
    later = nosql.run_query(dataset, "session_funnel_by_device", since=at(24), until=at(48))
    assert [(r["device_type"], r["sessions"], r["successes"]) for r in later] == [("desktop", 1, 1)]


def test_feedback_rating_against_dispute_rate_per_merchant(dataset):
    rows = nosql.run_query(dataset, "feedback_rating_vs_dispute_rate", since=DAY)
    assert rows == [
        {"merchant_id": 1, "feedback": 2, "average_rating": 3.0, "payments": 2, "disputed": 0, "dispute_rate": 0.0},
        {"merchant_id": 2, "feedback": 1, "average_rating": 1.0, "payments": 2, "disputed": 1, "dispute_rate": 0.5},
        {"merchant_id": 3, "feedback": 1, "average_rating": 5.0, "payments": 0, "disputed": 0, "dispute_rate": None},
    ]
    assert nosql.run_query(dataset, "feedback_rating_vs_dispute_rate", since=at(21)) == []


def test_devices_seen_with_many_customers_in_one_day(dataset):
    rows = nosql.run_query(dataset, "devices_with_many_customers", day=DAY, next_day=at(24), min_customers=2)
    assert rows == [{"device_id": token("dev-a", "device"), "customer_count": 2, "session_count": 1, "payments": 2}]
    assert len(nosql.run_query(dataset, "devices_with_many_customers", day=DAY, next_day=at(24), min_customers=1)) == 2
    assert nosql.run_query(dataset, "devices_with_many_customers", day=DAY, next_day=at(24), min_customers=3) == []


def test_top_error_codes_per_hour(dataset):
    rows = nosql.run_query(dataset, "top_error_codes_per_hour", since=DAY, until=at(24), top=1)
    assert rows == [
        {"hour": at(10).replace(tzinfo=None), "errors": 3, "codes": [{"code": "card_declined", "count": 2}]},
        {"hour": at(11).replace(tzinfo=None), "errors": 2, "codes": [{"code": "card_declined", "count": 1}]},
    ]
    both = nosql.run_query(dataset, "top_error_codes_per_hour", since=at(11), until=at(12), top=5)
    assert both[0]["codes"] == [{"code": "card_declined", "count": 1}, {"code": "http_502", "count": 1}]


def test_one_payment_with_its_session_events(dataset):
    rows = nosql.run_query(dataset, "payment_with_session_events", charge_id=12)
    assert len(rows) == 1
    row = rows[0]
    assert (row["charge_id"], row["status"], row["device_type"]) == (12, "disputed", "desktop")
    assert row["session_id"] == token("s3", "session")
    assert [(e["seq"], e["event"]) for e in row["events"]] == [(11, "payment_submit"), (150, "payment_submit")]
    assert nosql.run_query(dataset, "payment_with_session_events", charge_id=999) == []
