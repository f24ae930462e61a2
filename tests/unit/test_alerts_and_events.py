"""Failure alerts (log line, webhook through a connection), lag and freshness thresholds, the
facts carried by capture Asset events, the build's log line, and the run interval of manual runs."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

from paydata import alerts, assets
from paydata.generator import GeneratorError, run_interval
from paydata.warehouse.build import summarise_build, triggering_events

UTC = dt.UTC


def _report(**overrides):
    report = {
        "source": "oltp", "slot": "paydata_oltp", "start_lsn": "0/2EE0010", "end_lsn": "0/2F00000",
        "snapshot": None, "applied": {"warehouse": 0, "mongo": 0}, "tables": {"warehouse": {}, "mongo": {}},
        "dead_lettered": 0, "lag_bytes": 0, "lag_seconds": 1.5, "wal_status": "reserved",
    }
    report.update(overrides)
    return report


def test_a_run_that_applied_nothing_publishes_no_event():
    assert assets.capture_event_extra(_report(), "warehouse") is None
    assert assets.capture_event_extra(_report(), "mongo") is None


def test_event_metadata_says_what_changed_for_that_sink_only():
    report = _report(applied={"warehouse": 5, "mongo": 0},
                     tables={"warehouse": {"charge": 3, "refund": 2}, "mongo": {}})
    extra = assets.capture_event_extra(report, "warehouse")
    assert extra == {"source": "oltp", "sink": "warehouse", "changes": 5, "snapshot_rows": 0,
                     "start_lsn": "0/2EE0010", "end_lsn": "0/2F00000", "tables": {"charge": 3, "refund": 2},
                     "dead_lettered": 0}
    assert assets.capture_event_extra(report, "mongo") is None
    json.dumps(extra)  # Asset event extras must be JSON


def test_a_snapshot_counts_as_changes():
    report = _report(snapshot={"tables": ["charge"], "rows": {"charge": 7, "refund": 0}})
    extra = assets.capture_event_extra(report, "warehouse")
    assert extra["changes"] == 7 and extra["snapshot_rows"] == 7 and extra["tables"] == {"charge": 7}


def test_build_reads_the_triggering_events_and_logs_lsns_as_text():
    from airflow.sdk import Asset

    asset = Asset("paydata://warehouse/staging/oltp")
    event = SimpleNamespace(extra={"source": "oltp", "changes": 12, "start_lsn": "0/10", "end_lsn": "0/20",
                                   "tables": {"charge": 12}})
    events = triggering_events({asset: [event]})
    assert events == [{"asset": "paydata://warehouse/staging/oltp", "source": "oltp", "changes": 12,
                       "start_lsn": "0/10", "end_lsn": "0/20", "tables": {"charge": 12}}]
    report = {"up_to_date": False, "duration_s": 0.5, "fact_window": None,
              "rows": {"facts_written": 4, "charges_written": 2},
              "sources": {"reference": {"from": [0, -1], "to": [0, -1]},
                          "oltp": {"from": [49155568, -2147483639], "to": [49155600, 3]}}}
    summary = summarise_build(report, events)
    assert summary["sources"]["oltp"] == {"from": "0/2EE0DF0", "to": "0/2EE0E10"}
    assert "-2147483639" not in summary["text"] and "0/2EE0DF0..0/2EE0E10" in summary["text"]
    assert "oltp 12 changes 0/10..0/20" in summary["text"]
    json.dumps(summary)


def test_lag_and_freshness_thresholds():
    assert alerts.lag_problems(_report(), 1000, 60) == []
    problems = alerts.lag_problems(_report(lag_bytes=5000, lag_seconds=120.0), 1000, 60)
    assert len(problems) == 2 and "5,000 bytes" in problems[0] and "120 s" in problems[1]
    assert alerts.lag_problems(_report(wal_status="lost"), 1000, 60)
    now = dt.datetime(2026, 3, 1, 12, tzinfo=UTC)
    rows = [{"table_name": "fct_charge", "source_commit_at": now - dt.timedelta(hours=7)},
            {"table_name": "fct_balance_transaction", "source_commit_at": now - dt.timedelta(minutes=5)},
            {"table_name": "fct_refund", "source_commit_at": None}]
    problems = alerts.freshness_problems(rows, now, dt.timedelta(hours=6))
    assert len(problems) == 1 and problems[0].startswith("fct_charge")


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, _Receiver.received
    server.shutdown()
    server.server_close()


def _context():
    ti = SimpleNamespace(dag_id="oltp_cdc", task_id="capture", run_id="manual__1", try_number=3, map_index=-1,
                         log_url="http://127.0.0.1:8080/log")
    return {"task_instance": ti, "exception": RuntimeError("slot lost")}


def test_failure_notifier_logs_one_line_and_posts_the_webhook(receiver, monkeypatch, caplog):
    server, received = receiver
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": server.server_port, "schema": "http",
            "extra": {"endpoint": "hooks/paydata"}}
    monkeypatch.setenv("AIRFLOW_CONN_PAYDATA_ALERTS", json.dumps(conn))
    with caplog.at_level(logging.ERROR, logger="paydata.alerts"):
        alerts.FailureNotifier().notify(_context())
    assert any("oltp_cdc.capture failed in run manual__1 (try 3): RuntimeError: slot lost" in r.message
               for r in caplog.records)
    assert len(received) == 1
    path, payload = received[0]
    assert path == "/hooks/paydata"
    assert payload["dag_id"] == "oltp_cdc" and payload["task_id"] == "capture" and "slot lost" in payload["text"]


def test_a_dag_callback_with_a_serialized_dag_in_its_context_still_alerts(monkeypatch, caplog):
    # `airflow dags test` hands DAG-level callbacks a SerializedDAG, which has no template environment
    monkeypatch.delenv("AIRFLOW_CONN_PAYDATA_ALERTS", raising=False)
    context = {**_context(), "dag": SimpleNamespace(dag_id="oltp_cdc")}
    with caplog.at_level(logging.ERROR, logger="paydata.alerts"):
        alerts.FailureNotifier()(context)
    assert any("oltp_cdc.capture failed in run manual__1" in r.message for r in caplog.records)


def test_failure_notifier_without_connection_or_with_a_dead_webhook_never_raises(monkeypatch, caplog):
    monkeypatch.delenv("AIRFLOW_CONN_PAYDATA_ALERTS", raising=False)
    alerts.FailureNotifier().notify(_context())
    monkeypatch.setenv("AIRFLOW_CONN_PAYDATA_ALERTS", json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9/x"}))
    with caplog.at_level(logging.ERROR, logger="paydata.alerts"):
        alerts.FailureNotifier().notify(_context())
    assert any("could not be delivered" in r.message for r in caplog.records)


def test_dag_level_failure_facts():
    facts = alerts.failure_facts({"dag": SimpleNamespace(dag_id="warehouse_build"), "run_id": "r1",
                                  "reason": "timed_out"})
    assert facts["text"] == "[paydata] DAG warehouse_build failed in run r1: timed_out"


def test_manual_runs_without_a_logical_date_get_the_day_before_run_after():
    run_after = dt.datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
    # `airflow dags trigger` / REST without a logical date: no data_interval_* and no logical_date keys
    context = {"dag_run": SimpleNamespace(run_after=run_after), "params": {}}
    assert run_interval(context) == (run_after - dt.timedelta(days=1), run_after)
    # with a logical date: an empty interval ending there
    logical = dt.datetime(2026, 3, 1, tzinfo=UTC)
    assert run_interval({"data_interval_start": logical, "data_interval_end": logical}) == (
        logical - dt.timedelta(days=1), logical)
    # scheduled and backfill runs: their interval
    start = dt.datetime(2026, 2, 1, tzinfo=UTC)
    assert run_interval({"data_interval_start": start, "data_interval_end": logical}) == (start, logical)
    with pytest.raises(GeneratorError):
        run_interval({})


def test_demo_prints_each_task_as_it_finishes_and_the_run_summaries():
    from paydata.demo import progress_lines

    state: dict = {}
    lines = [
        "2026-12-07T07:08:41Z [info ] [DAG TEST] starting task_id=capture map_index=-1 [airflow.sdk] loc=dag.py:1",
        "2026-12-07T07:08:43Z [info ] cdc run oltp: caught up; 12 changes read [paydata.cdc.engine] loc=engine.py:1",
        "2026-12-07T07:08:43Z [info ] Task instance state updated [x] new_state=success",
        "2026-12-07T07:08:43Z [info ] [DAG TEST] end task task_id=capture map_index=-1 [airflow.sdk] loc=dag.py:2",
    ]
    shown = [out for line in lines for out in progress_lines(line, state)]
    assert shown[0].strip() == "cdc run oltp: caught up; 12 changes read"
    assert shown[1].split()[:2] == ["capture", "success"]
    assert len(shown) == 2
