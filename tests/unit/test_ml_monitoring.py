"""Monitoring logic without services: settings, drift methods, matured performance, the decision."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ml.monitoring.config import ConfigError, load_config
from ml.monitoring.decision import decide
from ml.monitoring.drift import _psi_quantile, feature_drift, prediction_drift
from ml.monitoring.jobs import retrain_event
from ml.monitoring.performance import matured_window, performance

CONFIG = load_config()
AS_OF = pd.Timestamp("2026-06-01", tz="UTC")


def test_the_shipped_settings_load_and_bad_ones_are_named(tmp_path):
    assert CONFIG.numeric.method == "wasserstein" and CONFIG.prediction.method == "psi_quantile"
    assert CONFIG.column_check("bin_ip_country_mismatch").method == "jensenshannon"
    with pytest.raises(ConfigError, match="feature_drift.drift_share"):
        load_config(feature_drift={"drift_share": 1.5})
    with pytest.raises(ConfigError, match="unknown method 'magic'"):
        load_config(prediction_drift={"method": "magic"})
    with pytest.raises(ConfigError, match="performance.segments"):
        load_config(performance={"segments": ["planet"]})
    path = tmp_path / "broken.yaml"
    path.write_text("model: {name: fraud_scoring}\n")
    with pytest.raises(ConfigError, match="'model.alias' is missing"):
        load_config(path)


def test_psi_over_reference_quantiles_sees_a_shift_of_a_skewed_score():
    rng = np.random.default_rng(1)
    reference = pd.Series(rng.beta(0.4, 25, 20_000))
    same, _ = _psi_quantile(reference, pd.Series(rng.beta(0.4, 25, 2_000)), None, 0.2)
    shifted, drifted = _psi_quantile(reference, pd.Series(rng.beta(0.4, 25, 2_000) * 3), None, 0.2)
    assert same < 0.05 and shifted > 0.2 and drifted
    constant, _ = _psi_quantile(pd.Series(np.zeros(100)), pd.Series(np.zeros(50)), None, 0.2)
    assert constant == 0.0


def _frames(shift: float = 0.0, rows: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    reference = pd.DataFrame({"amount_usd": rng.lognormal(3, 1, 10_000), "hour_of_day": rng.integers(0, 24, 10_000),
                              "bin_ip_country_mismatch": (rng.random(10_000) < 0.05).astype(float)})
    current = pd.DataFrame({"amount_usd": rng.lognormal(3 + shift, 1, rows), "hour_of_day": rng.integers(0, 24, rows),
                            "bin_ip_country_mismatch": (rng.random(rows) < 0.05).astype(float)})
    return reference, current


def test_feature_drift_flags_a_scale_change_of_amounts_and_not_noise():
    config = dataclasses.replace(CONFIG, drift_share=0.3)
    columns = ["amount_usd", "hour_of_day", "bin_ip_country_mismatch"]
    calm = feature_drift(*_frames(), config, columns)
    assert calm["status"] == "ok" and calm["drifted"] == [] and calm["compared"] == 3
    moved = feature_drift(*_frames(shift=np.log(2)), config, columns)
    assert moved["status"] == "drift" and moved["drifted"] == ["amount_usd"]
    assert moved["snapshot"] is not None


def test_feature_drift_with_too_little_data_or_missing_columns():
    reference, current = _frames()
    few = feature_drift(reference, current.head(10), CONFIG, ["amount_usd"])
    assert few["status"] == "insufficient_data" and "fewer than" in few["reason"]
    with pytest.raises(ValueError, match="missing"):
        feature_drift(reference, current.drop(columns=["hour_of_day"]), CONFIG, ["amount_usd", "hour_of_day"])
    empty = feature_drift(reference.assign(amount_usd=np.nan), current.assign(amount_usd=np.nan), CONFIG,
                          ["amount_usd"])
    assert empty["status"] == "insufficient_data" and empty["columns"][0]["status"] == "insufficient_data"
    scores = prediction_drift(np.array([]), np.random.default_rng(0).random(500), CONFIG)
    assert scores["status"] == "insufficient_data"


def _matured(rows: int = 4000, fraud_rate: float = 0.03, signal: float = 0.4, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    fraud = rng.random(rows) < fraud_rate
    created = AS_OF - pd.Timedelta(days=90) + pd.to_timedelta(rng.uniform(0, 7, rows), unit="D")
    return pd.DataFrame({"created_at": created, "label_matured_at": created + pd.Timedelta(days=60),
                         "is_fraud": fraud, "score": np.clip(rng.normal(0.05 + signal * fraud, 0.1), 0, 1),
                         "segment_merchant_country": rng.choice(["DE", "US"], rows),
                         "segment_merchant_risk_tier": rng.choice(["low", "high"], rows)})


def test_performance_flags_a_drop_beyond_the_margin_and_reports_days_and_segments():
    good = performance(_matured(), AS_OF, CONFIG, reference_pr_auc=0.9)
    assert good["status"] == "ok" and good["overall"]["value"] > 0.8
    worse = performance(_matured(signal=0.1), AS_OF, CONFIG, reference_pr_auc=0.9)
    assert worse["status"] == "drop" and worse["overall"]["value"] < 0.85 * 0.9
    assert len(worse["days"]) == 7 and sum(day["status"] == "drop" for day in worse["days"]) >= 3
    assert {s["segment"] for s in worse["segments"]} == {"merchant_country=DE", "merchant_country=US",
                                                          "merchant_risk_tier=low", "merchant_risk_tier=high"}
    unknown = performance(_matured(), AS_OF, CONFIG, reference_pr_auc=None)
    assert unknown["status"] == "insufficient_data" and unknown["overall"]["value"] is not None


def test_performance_refuses_immature_labels_and_reports_too_few():
    frame = _matured()
    frame.loc[0, "label_matured_at"] = AS_OF + pd.Timedelta(hours=1)
    with pytest.raises(ValueError, match="had not matured"):
        performance(frame, AS_OF, CONFIG, 0.9)
    none = performance(_matured().iloc[0:0], AS_OF, CONFIG, 0.9)
    assert none["status"] == "insufficient_data" and "0 matured labels" in none["reason"]
    with pytest.raises(ValueError, match="lacks columns"):
        performance(_matured().drop(columns=["segment_merchant_country"]), AS_OF, CONFIG, 0.9)
    start, end = matured_window(AS_OF, CONFIG)
    assert end == AS_OF - pd.Timedelta(days=60) and end - start == pd.Timedelta(days=CONFIG.lookback_days)


DRIFT = {"status": "drift", "reason": "6 of 35 inputs drifted", "drifted": ["amount_usd"]}
CALM = {"status": "ok"}
NO_DATA = {"status": "insufficient_data"}


def test_decision_retrains_on_an_alert_and_cools_down():
    as_of = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    first = decide(DRIFT, CALM, NO_DATA, as_of=as_of, last_request=None, config=CONFIG)
    assert first["decision"] == "retrain" and first["alert"] and "amount_usd" in first["reason"]
    held = decide(DRIFT, CALM, CALM, as_of=as_of, last_request=as_of - dt.timedelta(days=3), config=CONFIG)
    assert held["decision"] == "cooldown" and held["alert"]
    after = decide(DRIFT, CALM, CALM, as_of=as_of, last_request=as_of - dt.timedelta(days=7), config=CONFIG)
    assert after["decision"] == "retrain"
    drop = {"status": "drop", "reason": "PR-AUC 0.3 against a floor of 0.5", "reference_pr_auc": 0.6}
    assert decide(CALM, CALM, drop, as_of=as_of, last_request=None, config=CONFIG)["decision"] == "retrain"
    assert decide(CALM, CALM, CALM, as_of=as_of, last_request=None, config=CONFIG)["decision"] == "none"
    quiet = decide(NO_DATA, NO_DATA, NO_DATA, as_of=as_of, last_request=None, config=CONFIG)
    assert quiet == {"decision": "insufficient_data", "alert": False, "reason": "too little data for every check"}


def test_only_a_retrain_decision_becomes_an_asset_event():
    assert retrain_event({"decision": "cooldown", "monitoring_run_id": 3}) is None
    assert retrain_event({"decision": "none"}) is None
    event = retrain_event({"decision": "retrain", "monitoring_run_id": 3, "reason": "drift", "as_of": "x",
                           "model_version": "2", "drift_share": 0.2, "pr_auc": None, "mlflow_run_id": "r"})
    assert event["monitoring_run_id"] == 3 and event["reason"] == "drift"


def test_the_scores_settings_name_the_columns_of_the_horizon_rule():
    assert CONFIG.scores["created_column"] == "charge_created_at" and CONFIG.scores["scored_column"] == "scored_at"
    raw = dict(CONFIG.raw, scores={k: v for k, v in CONFIG.raw["scores"].items() if k != "scored_column"})
    from ml.monitoring.config import parse_config

    with pytest.raises(ConfigError, match="scores.scored_column"):
        parse_config(raw)


def _pass_found(evidence_scores):
    evidence = {"feature_drift": {"status": "ok", "share": 0.0571, "drifted": ["amount_usd", "hour_of_day"]},
                "prediction_drift": {"status": "ok", "score": 0.031, "threshold": 0.2, "method": "psi_quantile"},
                "performance": {"status": "ok", "pr_auc": 0.4123, "floor": 0.3504, "labelled": 4700, "fraud": 96}}
    if evidence_scores is not None:
        evidence["scores"] = evidence_scores
    return {"model_name": "fraud_scoring", "model_version": "3", "as_of": "2026-12-07 14:00:00+00:00",
            "decision": "none", "reason": "within thresholds", "mlflow_run_id": None, "evidence": evidence}


def test_the_demo_summary_says_where_the_monitored_scores_came_from(monkeypatch, capsys):
    from paydata import demo

    monkeypatch.setattr(demo, "monitoring_summary", lambda: _pass_found(
        {"current": {"stored": 170, "computed": 4830}, "reference": {"stored": 0, "computed": 20000},
         "matured": {"stored": 0, "computed": 4700}}))
    demo.print_monitoring_summary()
    printed = capsys.readouterr().out
    assert "PR-AUC 0.4123 on 4700 matured labels (96 fraud), floor 0.3504" in printed
    assert ("scores from the scoring API / computed on point-in-time features: current 170/4830, "
            "reference 0/20000, matured 0/4700") in printed
    assert "drift share 5.7%; drifted: amount_usd, hour_of_day" in printed
    # a pass recorded before the counts existed prints without them
    monkeypatch.setattr(demo, "monitoring_summary", lambda: _pass_found(None))
    demo.print_monitoring_summary()
    printed = capsys.readouterr().out
    assert "decision: none" in printed and "scores from" not in printed
