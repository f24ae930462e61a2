"""One training run: a training set in, a registered ``fraud_scoring`` version and a gate decision out.

:func:`train_and_register` reads the training set (by id: the warehouse positions and label time
it was built from are on its row), splits it by time, fits the rules baseline's calibration and
the model, evaluates both on the newest part, and logs to MLflow: params, metrics of model and
baseline, the feature definitions and their hash, the data version (positions, row counts, time
ranges), the model (signature, input example, ``predict_proba`` as the pyfunc), and the PR,
calibration and importance plots, and what the scorer needs (decision thresholds and the reason
reference, :mod:`ml.training.serving_config`). The new version becomes ``challenger`` and the gate
(:mod:`ml.registry.gate`) decides on ``champion``. Returns references and numbers, never data.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import yaml

from ml.features.definitions import Definitions, definitions_hash, load_definitions
from ml.features.offline import load_training_frame, training_set_reference
from ml.registry.gate import MODEL_NAME, run_gate
from ml.training import metrics as m
from ml.training import plots
from ml.training.baseline import RulesBaseline
from ml.training.data import SPLIT_FRACTIONS, model_matrix, split_summary, time_split
from ml.training.model import DEFAULT_PARAMS, SKOPS_TRUSTED_TYPES, booster_of, fit_model
from ml.training.serving_config import SERVING_ARTIFACT, serving_config

EXPERIMENT = "fraud_scoring"


def evaluate(definitions: Definitions, parts: dict, params: dict | None = None) -> dict[str, Any]:
    """Fit baseline calibration and model on the train/validation parts, score the test part.
    Pure (no MLflow, no database): the tests and the quality benchmark call it directly."""
    inputs = {name: model_matrix(part, definitions) for name, part in parts.items()}
    labels = {name: part["is_fraud"].to_numpy(dtype=bool) for name, part in parts.items()}
    started = time.monotonic()
    model = fit_model(inputs["train"], labels["train"], inputs["validation"], labels["validation"], params)
    fit_seconds = time.monotonic() - started
    baseline = RulesBaseline(definitions).fit(inputs["validation"], labels["validation"])
    model_threshold = m.best_threshold(labels["validation"], model.predict_proba(inputs["validation"])[:, 1])
    baseline_threshold = m.best_threshold(labels["validation"], baseline.predict_proba(inputs["validation"]))
    test_probabilities = model.predict_proba(inputs["test"])[:, 1]
    baseline_probabilities = baseline.predict_proba(inputs["test"])
    baseline_scores = baseline.score(inputs["test"])
    model_metrics = m.score_metrics(labels["test"], test_probabilities, model_threshold)
    baseline_metrics = m.score_metrics(labels["test"], baseline_probabilities, baseline_threshold)
    # ranking metrics of the baseline on its raw points (the isotonic map can merge levels)
    baseline_metrics.update(m.ranking_metrics(labels["test"], baseline_scores))
    return {"model": model, "baseline": baseline, "inputs": inputs, "labels": labels,
            "test_probabilities": test_probabilities, "baseline_probabilities": baseline_probabilities,
            "baseline_scores": baseline_scores, "model_metrics": model_metrics,
            "baseline_metrics": baseline_metrics, "fit_seconds": fit_seconds,
            "iterations": int(booster_of(model).n_iter_)}


def _experiment(mlflow, name: str) -> None:
    if mlflow.get_experiment_by_name(name) is None:
        location = os.environ.get("PAYDATA_MLFLOW_ARTIFACTS")
        mlflow.create_experiment(name, artifact_location=location and f"{location.rstrip('/')}/{name}")
    mlflow.set_experiment(name)


def train_and_register(conn, training_set_id: int, *, definitions: Definitions | None = None,
                       tracking_uri: str | None = None, model_name: str = MODEL_NAME,
                       params: dict | None = None, experiment: str = EXPERIMENT) -> dict[str, Any]:
    """Train on a training set, log and register the model, run the gate (see the module doc)."""
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    from paydata import settings

    definitions = definitions or load_definitions()
    reference = training_set_reference(conn, training_set_id)
    frame = load_training_frame(conn, definitions, training_set_id)
    parts = time_split(frame)
    result = evaluate(definitions, parts, params)
    mlflow.set_tracking_uri(tracking_uri or settings.mlflow_tracking_uri())
    _experiment(mlflow, experiment)
    client = MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_params({**{f"model.{k}": v for k, v in {**DEFAULT_PARAMS, **(params or {})}.items()},
                           "split_fractions": ",".join(map(str, SPLIT_FRACTIONS)),
                           "cost_missed_fraud_usd": m.COST_MISSED_FRAUD,
                           "cost_false_decline_usd": m.COST_FALSE_DECLINE,
                           "features.definitions": definitions.name,
                           "features.version": definitions.version,
                           "features.count": len(definitions.model_features),
                           "data.training_set_id": training_set_id,
                           "data.oltp_lsn": reference["oltp_lsn"], "data.reference_lsn": reference["reference_lsn"],
                           "data.label_as_of": reference["label_as_of"],
                           "data.label_maturity_days": reference["label_maturity_days"],
                           "data.rows": reference["row_count"], "data.fraud_rows": reference["fraud_count"]})
        mlflow.set_tags({"features.definitions_hash": definitions_hash(definitions),
                         "data.offline_table": reference["offline_table"], **{
                             f"data.{k}": v for k, v in split_summary(parts).items() if k.endswith(("from", "to"))}})
        mlflow.log_metrics({**{f"model.{k}": v for k, v in result["model_metrics"].items()},
                            **{f"baseline.{k}": v for k, v in result["baseline_metrics"].items()},
                            **{f"data.{k}": float(v) for k, v in split_summary(parts).items()
                               if not k.endswith(("from", "to"))},
                            "model.fit_seconds": result["fit_seconds"], "model.iterations": result["iterations"]})
        mlflow.log_text(yaml.safe_dump(definitions.raw, sort_keys=False), "features/definitions.yaml")
        test_inputs, test_labels = result["inputs"]["test"], result["labels"]["test"]
        mlflow.log_figure(plots.pr_curve(test_labels, result["test_probabilities"], result["baseline_scores"]),
                          "plots/pr_curve.png")
        mlflow.log_figure(plots.calibration(test_labels, result["test_probabilities"],
                                            result["baseline_probabilities"]), "plots/calibration.png")
        figure, importances = plots.feature_importance(result["model"], test_inputs, test_labels)
        mlflow.log_figure(figure, "plots/feature_importance.png")
        mlflow.log_dict(importances, "plots/feature_importance.json")
        validation_inputs = result["inputs"]["validation"]
        serving = serving_config(list(definitions.model_features), result["labels"]["validation"],
                                 result["model"].predict_proba(validation_inputs)[:, 1], result["inputs"]["train"])
        mlflow.log_dict(serving, SERVING_ARTIFACT)
        example = test_inputs.head(5)
        info = mlflow.sklearn.log_model(
            result["model"], name="model", signature=infer_signature(example, result["model"].predict_proba(example)),
            input_example=example, pyfunc_predict_fn="predict_proba", skops_trusted_types=SKOPS_TRUSTED_TYPES,
            registered_model_name=model_name)
        version = str(info.registered_model_version)
        for band, threshold in serving["thresholds"].items():
            client.set_model_version_tag(model_name, version, f"serving.{band}_threshold", f"{threshold:.6f}")
        decision = run_gate(client, model_name=model_name, challenger_version=version,
                            challenger_probabilities=result["test_probabilities"], holdout_inputs=test_inputs,
                            holdout_labels=test_labels,
                            baseline_pr_auc=result["baseline_metrics"]["pr_auc"], run_id=run.info.run_id,
                            warehouse_conn=conn, training_set_id=training_set_id)
    return {"run_id": run.info.run_id, "model_name": model_name, "model_version": version,
            "training_set_id": training_set_id, "promoted": decision["promoted"], "reason": decision["reason"],
            "model_metrics": result["model_metrics"], "baseline_metrics": result["baseline_metrics"],
            "fit_seconds": round(result["fit_seconds"], 2), "rows": int(reference["row_count"]),
            "fraud_rate": float(np.mean(frame["is_fraud"]))}
