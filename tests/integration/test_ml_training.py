"""Model behaviour on generated history and the registry gate (real Postgres, temporary MLflow store)."""

from __future__ import annotations

import datetime as dt

import pytest

from ml.features.definitions import load_definitions
from ml.features.offline import build_features, build_training_set, load_training_frame
from ml.registry.gate import CHALLENGER, CHAMPION, MODEL_NAME
from ml.training.data import time_split
from ml.training.run import evaluate, train_and_register
from ml.training.synthetic import InMemorySessions, SyntheticHistory
from paydata.generator.config import TrafficConfig
from paydata.warehouse import build

pytestmark = pytest.mark.integration

DEFINITIONS = load_definitions()
START = dt.datetime(2025, 9, 1, tzinfo=dt.UTC)


@pytest.fixture
def history(warehouse):
    """Three weeks of generated traffic (the generator's fraud process), marts and features built."""
    sessions = InMemorySessions()
    generated = SyntheticHistory(warehouse, merchants=40, seed=5)
    generated.reference(START.date() - dt.timedelta(days=1), 24, seed=5)
    for week in range(3):
        generated.traffic(TrafficConfig(payments=4000, start=START + dt.timedelta(days=7 * week), days=7,
                                        seed=50 + week), sessions_db=sessions)
    build(warehouse)
    build_features(warehouse, DEFINITIONS, sessions_db=sessions)
    reference = build_training_set(warehouse, DEFINITIONS, label_as_of=START + dt.timedelta(days=90))
    return warehouse, reference


def test_the_model_learns_the_fraud_signals_and_ranks_above_chance(history):
    conn, reference = history
    assert reference["row_count"] > 9000 and reference["fraud_count"] > 60
    result = evaluate(DEFINITIONS, time_split(load_training_frame(conn, DEFINITIONS, reference["training_set_id"])))
    model, baseline = result["model_metrics"], result["baseline_metrics"]
    assert model["pr_auc"] > 10 * model["fraud_rate"] and model["roc_auc"] > 0.9
    assert baseline["pr_auc"] > 5 * baseline["fraud_rate"]
    # better than knowing only the fraud rate (the Brier score of a constant prediction)
    assert model["brier"] < model["fraud_rate"] * (1 - model["fraud_rate"])
    # the probabilities are calibrated: their mean is near the observed fraud rate
    assert abs(result["test_probabilities"].mean() - model["fraud_rate"]) < 0.5 * model["fraud_rate"] + 0.005
    # a charge with the generator's stolen-card signature scores far above an ordinary one
    inputs = result["inputs"]["test"]
    ordinary, suspicious = inputs.iloc[[0]].copy(), inputs.iloc[[0]].copy()
    suspicious.loc[:, ["bin_ip_country_mismatch", "device_new_for_customer"]] = 1.0
    suspicious.loc[:, ["hour_of_day", "customer_charges_1h", "card_charges_1h"]] = [2.0, 3.0, 3.0]
    ordinary.loc[:, ["bin_ip_country_mismatch", "device_new_for_customer", "hour_of_day"]] = [0.0, 0.0, 14.0]
    ordinary.loc[:, ["customer_charges_1h", "card_charges_1h", "card_declines_1h"]] = 0.0
    assert result["model"].predict_proba(suspicious)[0, 1] > 5 * result["model"].predict_proba(ordinary)[0, 1]


def test_gate_promotes_a_better_challenger_only_and_records_every_decision(history, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    conn, reference = history
    monkeypatch.setenv("PAYDATA_MLFLOW_ARTIFACTS", str(tmp_path / "artifacts"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    set_id = reference["training_set_id"]
    weak = {"max_iter": 1, "max_leaf_nodes": 2}
    # a first model must beat the rules baseline: a one-split stump does not
    first = train_and_register(conn, set_id, tracking_uri=uri, params=weak)
    assert not first["promoted"] and first["reason"].startswith("first model"), first["reason"]
    client = MlflowClient(uri)
    assert str(client.get_model_version_by_alias(MODEL_NAME, CHALLENGER).version) == "1"
    assert CHAMPION not in client.get_registered_model(MODEL_NAME).aliases
    # an operator makes the stump champion; a real model then wins on the same held-out window
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, "1")
    better = train_and_register(conn, set_id, tracking_uri=uri)
    assert better["promoted"], better["reason"]
    assert str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version) == "2"
    # and a worse challenger leaves the champion where it is
    worse = train_and_register(conn, set_id, tracking_uri=uri, params=weak)
    assert not worse["promoted"]
    assert str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version) == "2"
    assert str(client.get_model_version_by_alias(MODEL_NAME, CHALLENGER).version) == "3"
    run = client.get_run(worse["run_id"])
    assert run.data.tags["gate.promoted"] == "False" and "gate.champion_pr_auc" in run.data.tags
    assert run.data.tags["features.definitions_hash"] and run.data.params["data.training_set_id"] == str(set_id)
    assert {"plots/pr_curve.png", "plots/calibration.png", "plots/feature_importance.png"} <= {
        a.path for a in client.list_artifacts(worse["run_id"], "plots")}
    with conn.cursor() as cursor:
        cursor.execute("SELECT challenger_version, champion_version, promoted, challenger_pr_auc, champion_pr_auc "
                       "FROM features.model_decision ORDER BY decision_id")
        decisions = cursor.fetchall()
    conn.rollback()
    assert [(d[0], d[1], d[2]) for d in decisions] == [("1", None, False), ("2", "1", True), ("3", "2", False)]
    assert decisions[1][3] > decisions[1][4] and decisions[2][3] < decisions[2][4]
    # the registered model scores through pyfunc with probabilities
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{CHAMPION}")
    frame = load_training_frame(conn, DEFINITIONS, set_id)
    from ml.training.data import model_matrix

    scores = model.predict(model_matrix(frame.head(3), DEFINITIONS))
    assert scores.shape == (3, 2) and ((scores >= 0) & (scores <= 1)).all()
