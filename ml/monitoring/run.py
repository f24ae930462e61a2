"""One monitoring pass of the champion at ``as_of``: drift of its inputs and scores, its matured
performance, the decision, and the record of all of it.

:func:`monitor` compares the features of the charges of ``[as_of - current_days, as_of)`` with a
sample of the champion's training window, the champion's scores on both, and its PR-AUC on the
scoring days whose labels have matured by ``as_of`` (labels derived as known at ``as_of``). It
logs a run to the MLflow experiment ``fraud_monitoring`` (the Evidently HTML reports as artifacts,
the numbers as metrics, the model name, version and training run as tags, and the decision),
tags the model version with the latest pass, and writes the pass and every number to the
warehouse (:mod:`ml.monitoring.store`). Returns references and numbers, never data.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from ml.features.definitions import Definitions, load_definitions
from ml.monitoring import store
from ml.monitoring.config import MonitoringConfig, load_config
from ml.monitoring.data import matured_frame, window_frame
from ml.monitoring.decision import INSUFFICIENT, decide
from ml.monitoring.drift import feature_drift, prediction_drift
from ml.monitoring.performance import classification_report, matured_window, performance
from ml.monitoring.scores import Champion, NoChampionError, fraud_scores, load_champion, model_inputs

EXPERIMENT = "fraud_monitoring"


def _reference_window(conn, champion: Champion) -> tuple[dt.datetime, dt.datetime] | None:
    from ml.features.offline import training_set_reference

    if champion.training_set_id is None:
        return None
    try:
        found = training_set_reference(conn, champion.training_set_id)
    except LookupError:
        return None
    if not found["first_created_at"]:
        return None
    return (dt.datetime.fromisoformat(found["first_created_at"]),
            dt.datetime.fromisoformat(found["last_created_at"]) + dt.timedelta(microseconds=1))


def _metric_rows(window: dict, feature: dict, prediction: dict, perf: dict, config: MonitoringConfig) -> list[dict]:
    current = {"window_start": window["current_start"], "window_end": window["current_end"], "segment": "all"}
    rows = [{**current, "check_name": "feature_drift", "metric": column["column"], "method": column["method"],
             "value": column["score"], "threshold": column["threshold"], "status": column["status"],
             "row_count": column["current_values"]} for column in feature["columns"]]
    rows.append({**current, "check_name": "feature_drift", "metric": "drift_share", "method": "share_of_inputs",
                 "value": feature.get("share"), "threshold": config.drift_share, "status": feature["status"],
                 "row_count": feature.get("compared")})
    rows.append({**current, "check_name": "prediction_drift", "metric": "score", "method": prediction["method"],
                 "value": prediction["score"], "threshold": prediction["threshold"], "status": prediction["status"],
                 "row_count": window["current_rows"]})
    matured = {"window_start": window["matured_start"], "window_end": window["matured_end"]}
    judged = [({**matured, "segment": "all"}, perf["overall"])]
    judged += [({**matured, "segment": part["segment"]}, part) for part in perf["segments"]]
    judged += [({"window_start": part["day"], "window_end": part["day"] + dt.timedelta(days=1), "segment": "day"}, part)
               for part in perf["days"]]
    for where, part in judged:
        rows.append({**where, "check_name": "performance", "metric": "pr_auc", "method": "average_precision",
                     "value": part["value"], "threshold": part["threshold"], "status": part["status"],
                     "row_count": part["labelled"], "fraud_count": part["fraud"]})
    return rows


def _log_mlflow(champion: Champion, window: dict, feature: dict, prediction: dict, perf: dict, decision: dict,
                snapshots: dict, tracking_uri: str | None) -> str:
    import mlflow
    from mlflow.tracking import MlflowClient

    from ml.training.run import _experiment
    from paydata import settings

    uri = tracking_uri or settings.mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    _experiment(mlflow, EXPERIMENT)
    with mlflow.start_run(run_name=f"{champion.name} v{champion.version} at {window['as_of'].isoformat()}") as run:
        mlflow.set_tags({"model.name": champion.name, "model.version": champion.version,
                         "model.run_id": champion.run_id, "monitoring.as_of": window["as_of"].isoformat(),
                         **{f"window.{key}": value.isoformat() for key, value in window.items()
                            if isinstance(value, dt.datetime) and key != "as_of"},
                         "monitoring.decision": decision["decision"], "monitoring.alert": str(decision["alert"]),
                         "monitoring.reason": decision["reason"][:5000],
                         "feature_drift.status": feature["status"],
                         "feature_drift.drifted": ",".join(feature["drifted"])[:5000],
                         "prediction_drift.status": prediction["status"], "performance.status": perf["status"]})
        numbers = {"feature_drift.share": feature.get("share"), "feature_drift.compared": feature.get("compared"),
                   "prediction_drift.score": prediction["score"], "performance.pr_auc": perf["overall"]["value"],
                   "performance.labelled": perf["overall"]["labelled"], "performance.fraud": perf["overall"]["fraud"],
                   "performance.reference_pr_auc": perf["reference_pr_auc"],
                   "data.current_rows": window["current_rows"], "data.reference_rows": window["reference_rows"]}
        mlflow.log_metrics({key: float(value) for key, value in numbers.items() if value is not None})
        with tempfile.TemporaryDirectory() as folder:
            for name, snapshot in snapshots.items():
                if snapshot is not None:
                    path = Path(folder) / f"{name}.html"
                    snapshot.save_html(str(path))
                    mlflow.log_artifact(str(path), "reports")
    client = MlflowClient(uri)
    for key, value in {"monitoring.last_run_id": run.info.run_id, "monitoring.last_as_of": window["as_of"].isoformat(),
                       "monitoring.last_decision": decision["decision"]}.items():
        client.set_model_version_tag(champion.name, champion.version, key, value)
    return run.info.run_id


def monitor(conn, *, as_of: dt.datetime, config: MonitoringConfig | None = None,
            definitions: Definitions | None = None, tracking_uri: str | None = None) -> dict[str, Any]:
    """One pass (see the module doc). ``as_of`` must be timezone-aware; it comes from the data (the
    latest OLTP commit the marts hold) or the run, never the clock, so a rerun gives the same result."""
    if as_of.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware, got {as_of!r}")
    config = config or load_config()
    definitions = definitions or load_definitions()
    matured_start, matured_end = (t.to_pydatetime() for t in matured_window(as_of, config))
    window = {"as_of": as_of, "current_start": as_of - dt.timedelta(days=config.current_days), "current_end": as_of,
              "matured_start": matured_start, "matured_end": matured_end, "current_rows": 0, "reference_rows": 0}
    run = {"model_name": config.model_name, "as_of": as_of, "current_start": window["current_start"],
           "current_end": as_of, "matured_start": matured_start, "matured_end": matured_end,
           "reference_start": None, "reference_end": None}
    try:
        champion = load_champion(config, tracking_uri)
    except NoChampionError as exc:
        run_id = store.record(conn, {**run, "model_version": None, "alert": False, "decision": INSUFFICIENT,
                                     "reason": str(exc), "evidence": {}, "mlflow_run_id": None}, [])
        return {"monitoring_run_id": run_id, "decision": INSUFFICIENT, "alert": False, "reason": str(exc),
                "model_version": None}
    reference_window = _reference_window(conn, champion)
    reference = (window_frame(conn, definitions, *reference_window, max_rows=config.reference_rows,
                              seed=config.sample_seed) if reference_window else None)
    current = window_frame(conn, definitions, window["current_start"], as_of, max_rows=config.max_current_rows,
                           seed=config.sample_seed)
    if reference is None:
        reference = current.iloc[0:0]
    else:
        window.update(reference_start=reference_window[0], reference_end=reference_window[1])
    window.update(current_rows=len(current), reference_rows=len(reference))
    feature = feature_drift(model_inputs(reference, definitions, champion.columns),
                            model_inputs(current, definitions, champion.columns), config, champion.columns)
    reference_scores, reference_stored = fraud_scores(conn, champion, reference, definitions, config)
    current_scores, stored = fraud_scores(conn, champion, current, definitions, config)
    prediction = prediction_drift(reference_scores, current_scores, config)
    matured = matured_frame(conn, definitions, as_of, matured_start, matured_end,
                            dt.timedelta(days=config.maturity_days))
    matured["score"], matured_stored = fraud_scores(conn, champion, matured, definitions, config)
    perf = performance(matured, as_of, config, champion.held_out_pr_auc)
    decision = decide(feature, prediction, perf, as_of=as_of,
                      last_request=store.last_retrain_request(conn, config.model_name, as_of), config=config)
    snapshots = {"feature_drift": feature["snapshot"], "prediction_drift": prediction["snapshot"],
                 "performance": classification_report(matured) if perf["overall"]["labelled"] else None}
    mlflow_run_id = _log_mlflow(champion, window, feature, prediction, perf, decision, snapshots, tracking_uri)
    evidence = {"feature_drift": {"status": feature["status"], "share": feature.get("share"),
                                  "drifted": feature["drifted"], "reason": feature["reason"]},
                "prediction_drift": {k: prediction[k] for k in ("status", "score", "threshold", "method", "reason")},
                "performance": {"status": perf["status"], "pr_auc": perf["overall"]["value"],
                                "floor": perf["floor"], "reference_pr_auc": perf["reference_pr_auc"],
                                "labelled": perf["overall"]["labelled"], "fraud": perf["overall"]["fraud"]},
                "rows": {"current": len(current), "reference": len(reference), "matured": len(matured),
                         "stored_scores": stored},
                # where each frame's scores came from: the scoring API's stored answers, or the
                # champion on the point-in-time features (charges fraud_score did not send)
                "scores": {name: {"stored": count, "computed": rows - count} for name, rows, count in (
                    ("current", len(current), stored), ("reference", len(reference), reference_stored),
                    ("matured", len(matured), matured_stored))}}
    run_id = store.record(conn, {**run, "model_version": champion.version, "alert": decision["alert"],
                                 "decision": decision["decision"], "reason": decision["reason"], "evidence": evidence,
                                 "mlflow_run_id": mlflow_run_id,
                                 "reference_start": window.get("reference_start"),
                                 "reference_end": window.get("reference_end")},
                          _metric_rows(window, feature, prediction, perf, config))
    return {"monitoring_run_id": run_id, "mlflow_run_id": mlflow_run_id, "model_version": champion.version,
            "as_of": as_of.isoformat(), **{k: decision[k] for k in ("decision", "alert", "reason")},
            "drift_share": feature.get("share"), "drifted": feature["drifted"], "feature_status": feature["status"],
            "prediction_psi": prediction["score"], "prediction_status": prediction["status"],
            "pr_auc": perf["overall"]["value"], "pr_auc_floor": perf["floor"], "performance_status": perf["status"],
            "matured_labels": perf["overall"]["labelled"], "matured_fraud": perf["overall"]["fraud"],
            "current_rows": len(current), "reference_rows": len(reference)}
