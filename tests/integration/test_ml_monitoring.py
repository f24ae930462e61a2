"""Monitoring of the fraud model on generated worlds (real Postgres, temporary MLflow store).

One warehouse per module holds every world (1,000 payments a day, each day its own batch):

* worlds 1-10 (seed = world): 7 reference days, then one more day of the same process; worlds 1-5
  also have one day of the covariate-shifted process (``paydata.generator.shift``);
* market 1 (seed 1): 14 training days (days 200-213), 7 days with the new fraud pattern (account
  takeover, days 300-306), 7 control days of the unchanged process (days 320-326), and two
  covariate-shifted days (366, 367) for the end-to-end passes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid

import numpy as np
import pytest

from ml.features.definitions import load_definitions
from ml.features.offline import build_training_set, load_training_frame
from ml.monitoring.config import load_config
from ml.monitoring.data import matured_frame, window_frame
from ml.monitoring.decision import decide
from ml.monitoring.drift import feature_drift, prediction_drift
from ml.monitoring.performance import performance
from ml.monitoring.testing import GeneratedWorld
from ml.training.data import model_matrix, time_split
from ml.training.run import evaluate
from paydata.generator.shift import WorldShift
from paydata.sql import load_sql
from tests.staging_layout import create_staging_layout

pytestmark = pytest.mark.integration

DEFINITIONS = load_definitions()
START = dt.datetime(2025, 1, 6, tzinfo=dt.UTC)
REFERENCE_DAYS = 7
CONFIG = load_config(performance={"lookback_days": 7})
COVARIATE = WorldShift(covariate=True)
TAKEOVER = WorldShift(new_fraud_pattern=True)


def world_day(world: int) -> int:
    return 20 * world


@pytest.fixture(scope="module")
def world(admin_connect):
    from paydata.stack.config import PG_SUPERUSER
    from paydata.stack.postgres import sql_statement

    admin = admin_connect("postgres")
    admin.autocommit = True
    name = f"monitoring_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        cursor.execute(sql_statement("create_database", database=name, owner=PG_SUPERUSER))
    conn = admin_connect(name)
    try:
        create_staging_layout(conn, admin_connect)
        generated = GeneratedWorld(conn, START, days_of_fx=370, payments_per_day=1000)
        for number in range(1, 11):
            generated.add_days(world_day(number), REFERENCE_DAYS + 1, seed=number)
            if number <= 5:
                generated.add_days(world_day(number) + REFERENCE_DAYS + 1, 1, seed=number, shift=COVARIATE)
        generated.add_days(200, 14, seed=1)
        generated.add_days(300, 7, seed=1, shift=TAKEOVER)
        generated.add_days(320, 7, seed=1)
        generated.add_days(366, 2, seed=1, shift=COVARIATE)
        generated.build(DEFINITIONS)
        yield conn, generated
    finally:
        conn.close()
        with admin.cursor() as cursor:
            cursor.execute(sql_statement("drop_database_force", database=name))


@pytest.fixture(scope="module")
def model(world):
    """A model of market 1, fitted on its training days (labels as known 61 days after them)."""
    conn, generated = world
    reference = build_training_set(conn, DEFINITIONS, label_as_of=generated.day(214 + 61),
                                   window_start=generated.day(200), window_end=generated.day(214))
    result = evaluate(DEFINITIONS, time_split(load_training_frame(conn, DEFINITIONS, reference["training_set_id"])))
    return result["model"], result["model_metrics"]["pr_auc"]


def _window(conn, generated, first: int, days: int = 1):
    return window_frame(conn, DEFINITIONS, generated.day(first), generated.day(first + days), max_rows=100_000)


def _passes(conn, generated, model, number: int, current_day: int) -> dict:
    reference = _window(conn, generated, world_day(number), REFERENCE_DAYS)
    current = _window(conn, generated, current_day)
    inputs = [model_matrix(frame, DEFINITIONS) for frame in (reference, current)]
    feature = feature_drift(*inputs, CONFIG, list(DEFINITIONS.model_features))
    prediction = prediction_drift(*(model.predict_proba(x)[:, 1] for x in inputs), CONFIG)
    return {"feature": feature, "prediction": prediction,
            "decision": decide(feature, prediction, {}, as_of=generated.day(current_day + 1), last_request=None,
                               config=CONFIG)}


def test_same_distribution_days_raise_no_alert_in_at_least_9_of_10_worlds(world, model):
    conn, generated = world
    results = [_passes(conn, generated, model[0], number, world_day(number) + REFERENCE_DAYS)
               for number in range(1, 11)]
    alerts = [r["decision"]["reason"] for r in results if r["decision"]["alert"]]
    assert len(alerts) <= 1, alerts
    assert all(r["feature"]["compared"] >= 30 for r in results)   # the inputs were really compared


def test_covariate_shift_is_detected_and_requests_retraining_in_each_of_5_worlds(world, model):
    conn, generated = world
    for number in range(1, 6):
        result = _passes(conn, generated, model[0], number, world_day(number) + REFERENCE_DAYS + 1)
        assert result["feature"]["status"] == "drift", (number, result["feature"]["reason"])
        assert "amount_usd" in result["feature"]["drifted"]
        assert result["decision"]["decision"] == "retrain", result["decision"]


def _matured(conn, generated, model, first: int, as_of: dt.datetime):
    frame = matured_frame(conn, DEFINITIONS, as_of, generated.day(first), generated.day(first + 7),
                          dt.timedelta(days=CONFIG.maturity_days))
    frame["score"] = model.predict_proba(model_matrix(frame, DEFINITIONS))[:, 1] if len(frame) else []
    return frame


def test_a_new_fraud_pattern_lowers_matured_pr_auc_by_a_fifth_and_is_flagged(world, model):
    conn, generated = world
    fitted, held_out = model
    control = _matured(conn, generated, fitted, 320, generated.day(327 + 60))
    shifted = _matured(conn, generated, fitted, 300, generated.day(307 + 60))
    judged_control = performance(control, generated.day(327 + 60), CONFIG, held_out)
    judged_shifted = performance(shifted, generated.day(307 + 60), CONFIG, held_out)
    # the takeover frauds look like their customers: the model misses them
    assert judged_shifted["overall"]["value"] <= 0.8 * judged_control["overall"]["value"]
    assert judged_shifted["overall"]["fraud"] > judged_control["overall"]["fraud"]
    assert judged_control["status"] == "ok", judged_control["reason"]
    assert judged_shifted["status"] == "drop", judged_shifted["reason"]
    assert len(judged_shifted["days"]) == 7
    assert {s["segment"].split("=")[0] for s in judged_shifted["segments"]} == {"merchant_country",
                                                                                  "merchant_risk_tier"}


def test_performance_never_uses_labels_that_had_not_matured_at_as_of(world, model):
    """Labels published later (every takeover charge labelled) must not reach an earlier pass: at
    30 days after the takeover days their labels have not matured, so those days are not judged."""
    from paydata.warehouse.labels import label_charges

    conn, generated = world
    label_charges(conn, as_of=generated.day(400))   # the published labels know every dispute
    early = generated.day(307 + 30)
    frame = matured_frame(conn, DEFINITIONS, early, generated.day(300), generated.day(307),
                          dt.timedelta(days=CONFIG.maturity_days))
    assert frame.empty
    # charges 60+ days old at as_of are judged, with only the disputes opened before as_of
    as_of = generated.day(300) + dt.timedelta(days=61)
    frame = matured_frame(conn, DEFINITIONS, as_of, generated.day(300), generated.day(301),
                          dt.timedelta(days=CONFIG.maturity_days))
    assert len(frame) > 500 and (frame["label_matured_at"] <= as_of).all()
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM marts.fct_charge_label WHERE is_fraud AND charge_created_at >= %s "
                       "AND charge_created_at < %s", (generated.day(300), generated.day(301)))
        published_fraud = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM staging.oltp_dispute AS d JOIN marts.fct_charge AS c USING (charge_id) "
                       "WHERE d.reason = 'fraudulent' AND c.created_at >= %s AND c.created_at < %s AND d.opened_at < %s",
                       (generated.day(300), generated.day(301), as_of))
        known_then = cursor.fetchone()[0]
    conn.rollback()
    assert int(frame["is_fraud"].sum()) == known_then <= published_fraud
    # and the performance check refuses a frame that holds an immature label
    leaked = frame.assign(score=0.5)
    leaked.loc[leaked.index[0], "label_matured_at"] = as_of + dt.timedelta(seconds=1)
    with pytest.raises(ValueError, match="had not matured"):
        performance(leaked, as_of, CONFIG, 0.5)


def _html_is_a_complete_evidently_report(path) -> None:
    text = path.read_text()
    assert text.lstrip().lower().startswith("<!doctype html") and text.rstrip().endswith("</html>")
    # the report bundles its own renderer and draws its widgets from embedded data
    assert "drawDashboard" in text and '"root_metric_' in text and len(text) > 1_000_000


def test_end_to_end_passes_record_alert_retrain_through_the_gate_and_cool_down(world, tmp_path, monkeypatch):
    """No champion -> insufficient data; a champion on a shifted day with the new fraud pattern
    matured -> retrain requested (table and MLflow); the retrained challenger goes through the gate;
    the next day's alert is held back by the cooldown."""
    from mlflow.tracking import MlflowClient

    from ml.monitoring.jobs import retrain_event
    from ml.monitoring.run import EXPERIMENT, monitor
    from ml.registry.gate import CHAMPION, MODEL_NAME
    from ml.training.run import train_and_register

    conn, generated = world
    monkeypatch.setenv("PAYDATA_MLFLOW_ARTIFACTS", str(tmp_path / "artifacts"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    as_of = generated.day(367)
    none_yet = monitor(conn, as_of=generated.day(100), config=CONFIG, tracking_uri=uri)
    assert none_yet["decision"] == "insufficient_data" and "no 'champion'" in none_yet["reason"]

    first = build_training_set(conn, DEFINITIONS, label_as_of=generated.day(214 + 61),
                               window_start=generated.day(200), window_end=generated.day(214))
    trained = train_and_register(conn, first["training_set_id"], tracking_uri=uri)
    client = MlflowClient(uri)
    if not trained["promoted"]:   # an operator's choice; the gate is tested in test_ml_training
        client.set_registered_model_alias(MODEL_NAME, CHAMPION, trained["model_version"])
    champion = trained["model_version"]

    summary = monitor(conn, as_of=as_of, config=CONFIG, tracking_uri=uri)
    assert summary["model_version"] == champion
    assert summary["decision"] == "retrain" and summary["alert"], summary
    assert summary["feature_status"] == "drift" and "amount_usd" in summary["drifted"]
    assert summary["performance_status"] == "drop" and summary["matured_labels"] > 1000
    assert retrain_event(summary)["monitoring_run_id"] == summary["monitoring_run_id"]

    # MLflow: the run is linked to the model version and holds the three reports
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.experiment_id == client.get_experiment_by_name(EXPERIMENT).experiment_id
    assert run.data.tags["model.version"] == champion and run.data.tags["monitoring.decision"] == "retrain"
    assert run.data.tags["model.run_id"] == trained["run_id"]
    assert client.get_model_version(MODEL_NAME, champion).tags["monitoring.last_run_id"] == run.info.run_id
    reports = {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
    assert reports == {"reports/feature_drift.html", "reports/prediction_drift.html", "reports/performance.html"}
    local = client.download_artifacts(run.info.run_id, "reports", str(tmp_path / "downloaded"))
    from pathlib import Path

    for name in reports:
        _html_is_a_complete_evidently_report(Path(local) / Path(name).name)
    drift_html = (Path(local) / "feature_drift.html").read_text()
    assert "amount_usd" in drift_html

    # the warehouse: the pass, its evidence and every number
    with conn.cursor() as cursor:
        cursor.execute("SELECT decision, alert, model_version, evidence->'feature_drift'->>'status', mlflow_run_id "
                       "FROM ml.monitoring_run WHERE monitoring_run_id = %s", (summary["monitoring_run_id"],))
        assert cursor.fetchone() == ("retrain", True, champion, "drift", run.info.run_id)
        cursor.execute("SELECT evidence->'scores' FROM ml.monitoring_run WHERE monitoring_run_id = %s",
                       (summary["monitoring_run_id"],))
        sources = cursor.fetchone()[0]
        cursor.execute("SELECT check_name, metric, segment, value, threshold, status FROM ml.monitoring "
                       "WHERE monitoring_run_id = %s", (summary["monitoring_run_id"],))
        numbers = cursor.fetchall()
    conn.rollback()
    # no scores table in this world: the champion scored every frame itself, and the pass went on
    assert sources["current"] == {"stored": 0, "computed": summary["current_rows"]}
    assert sources["reference"] == {"stored": 0, "computed": summary["reference_rows"]}
    assert sources["matured"]["stored"] == 0 and sources["matured"]["computed"] >= summary["matured_labels"]
    by_key = {(c, m, s): (v, t, st) for c, m, s, v, t, st in numbers if s != "day"}
    assert by_key[("feature_drift", "amount_usd", "all")][2] == "drift"
    assert by_key[("feature_drift", "drift_share", "all")][1] == CONFIG.drift_share
    value, floor, status = by_key[("performance", "pr_auc", "all")]
    assert status == "drop" and value < floor
    assert sum(1 for c, m, s, *_ in numbers if s == "day") == 7
    assert any(s.startswith("merchant_country=") for _, _, s in by_key)

    # the analyst's example query over the table
    with conn.cursor() as cursor:
        cursor.execute(load_sql("warehouse/queries/examples/monitoring/drifted_inputs.sql"),
                       {"as_of": as_of, "days": 30, "limit": 50})
        names = [d.name for d in cursor.description]
        drifted = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    conn.rollback()
    amount = next(row for row in drifted if row["input_name"] == "amount_usd")
    assert amount["drifted_pass_count"] == 1 and amount["pass_count"] == 1 and amount["retrain_requests"] == 1
    assert amount["method"] == "wasserstein" and float(amount["latest_score"]) > 0.1
    assert {row["input_name"] for row in drifted} == set(summary["drifted"])

    # retraining (what fraud_train does on the event): a challenger, and the gate decides
    retrain_set = build_training_set(conn, DEFINITIONS, label_as_of=as_of, window_start=generated.day(200))
    challenger = train_and_register(conn, retrain_set["training_set_id"], tracking_uri=uri)
    now_champion = str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version)
    assert now_champion == (challenger["model_version"] if challenger["promoted"] else champion)

    # the next day: still drifting, but inside the cooldown -> alert recorded, no new request
    later = monitor(conn, as_of=as_of + dt.timedelta(days=1), config=CONFIG, tracking_uri=uri)
    assert later["alert"] and later["decision"] == "cooldown", later
    assert retrain_event(later) is None and "requested at" in later["reason"]
    # a rerun of a pass replaces its record
    again = monitor(conn, as_of=as_of + dt.timedelta(days=1), config=CONFIG, tracking_uri=uri)
    assert again["monitoring_run_id"] == later["monitoring_run_id"]


def test_the_drift_report_renders_in_headless_chromium(world, model, tmp_path):
    import shutil

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    conn, generated = world
    result = _passes(conn, generated, model[0], 1, world_day(1) + REFERENCE_DAYS + 1)
    path = tmp_path / "feature_drift.html"
    result["feature"]["snapshot"].save_html(str(path))
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
    try:
        chrome.set_page_load_timeout(60)
        chrome.get(path.as_uri())
        import time

        deadline, text = time.monotonic() + 60, ""
        while time.monotonic() < deadline and "amount_usd" not in text:
            time.sleep(1)
            text = chrome.execute_script("return document.body ? document.body.innerText : ''") or ""
        errors = [entry for entry in chrome.get_log("browser") if entry.get("level") == "SEVERE"]
    finally:
        chrome.quit()
    assert "amount_usd" in text, text[:500]   # the page drew the per-column widgets
    assert re.search(r"drift", text, re.IGNORECASE)
    assert not errors, errors[:3]


def test_drift_of_the_same_frames_is_nil_and_bad_input_is_refused(world):
    conn, generated = world
    frame = model_matrix(_window(conn, generated, world_day(2), 2), DEFINITIONS)
    same = feature_drift(frame, frame, CONFIG, list(DEFINITIONS.model_features))
    assert same["status"] == "ok" and same["share"] == 0.0
    assert all(c["score"] < 1e-9 for c in same["columns"] if c["score"] is not None)
    with pytest.raises(ValueError, match="missing"):
        feature_drift(frame, frame.drop(columns=["amount_usd"]), CONFIG, list(DEFINITIONS.model_features))
    empty = feature_drift(frame, frame.iloc[:10], CONFIG, list(DEFINITIONS.model_features))
    assert empty["status"] == "insufficient_data" and empty["share"] is None
    quiet = dataclasses.replace(CONFIG, min_current_rows=1)
    scores = prediction_drift(np.full(500, 0.1), np.full(400, 0.1), quiet)
    assert scores["status"] in ("ok", "insufficient_data")


def test_stored_scores_are_read_only_when_sent_within_the_online_horizon(world, model):
    """A charge fraud_score did not send (too old for the online store) is scored by the champion
    on its point-in-time features, as is one whose stored score was sent after the horizon; a score
    sent in time is read as stored."""
    from ml.monitoring.scores import Champion, fraud_scores
    from ml.scoring.warehouse import ensure_schema, online_horizon

    conn, generated = world
    frame = _window(conn, generated, world_day(3)).head(3)
    on_time, late, missing = (int(c) for c in frame["charge_id"])
    created = dict(zip(frame["charge_id"].astype(int), frame["created_at"], strict=True))
    horizon = online_horizon(DEFINITIONS)
    champion = Champion("fraud_scoring", "7", "run", model[0], list(DEFINITIONS.model_features), None, None)
    ensure_schema(conn)
    try:
        with conn.cursor() as cursor:
            for charge, sent_after in ((on_time, horizon - dt.timedelta(seconds=1)), (late, horizon)):
                cursor.execute("INSERT INTO marts.fct_fraud_score VALUES (%s, 'fraud_scoring', '7', 0.999, 'decline', "
                               "'{}', '{}', false, %s, %s)", (charge, created[charge], created[charge] + sent_after))
        conn.commit()
        scores, stored = fraud_scores(conn, champion, frame, DEFINITIONS, CONFIG)
    finally:
        with conn.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS marts.fct_fraud_score, marts.fraud_score_state")
        conn.commit()
    computed = model[0].predict_proba(model_matrix(frame, DEFINITIONS))[:, 1]
    assert stored == 1
    assert scores[0] == 0.999
    assert scores[1] == pytest.approx(computed[1]) and scores[2] == pytest.approx(computed[2])
    assert computed[1] != pytest.approx(0.999)
