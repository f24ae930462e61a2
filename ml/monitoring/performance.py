"""Performance of the champion on charges whose fraud labels have matured, overall, per scoring
day and per segment (merchant country, merchant risk tier).

Pure (no database): the caller passes charges with ``created_at``, ``label_matured_at``,
``is_fraud``, ``score`` and a ``segment_<kind>`` column per segment kind, labels derived as known at ``as_of``. A row whose
label had not matured at ``as_of`` is refused (ValueError), so a loader that leaked later labels
fails loudly instead of flattering or condemning the model. PR-AUC is scikit-learn's average
precision (Evidently has no single-value PR-AUC).

The overall PR-AUC is compared with the champion's held-out PR-AUC from training: status ``drop``
when it is below ``(1 - max_relative_drop)`` times it. Days and segments are recorded with the
same threshold; only the overall result can request retraining (a segment holds too few frauds
for its PR-AUC to be more than a hint).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ml.monitoring.config import MonitoringConfig

OK, DROP, INSUFFICIENT = "ok", "drop", "insufficient_data"
REQUIRED = ("created_at", "label_matured_at", "is_fraud", "score")


def pr_auc(labels, scores) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(np.asarray(labels, dtype=bool), np.asarray(scores, dtype=float)))


def _judge(part: pd.DataFrame, config: MonitoringConfig, floor: float | None) -> dict[str, Any]:
    labelled, fraud = len(part), int(part["is_fraud"].sum())
    row = {"labelled": labelled, "fraud": fraud, "value": None, "threshold": floor, "status": INSUFFICIENT}
    if labelled < config.min_labelled or fraud < config.min_fraud or fraud == labelled:
        row["reason"] = (f"{labelled} matured labels ({fraud} fraud); at least {config.min_labelled} "
                         f"and {config.min_fraud} fraud are needed")
        return row
    row["value"] = pr_auc(part["is_fraud"], part["score"])
    if floor is None:
        row["reason"] = "no held-out PR-AUC of the champion to compare with"
        return row
    row["status"] = DROP if row["value"] < floor else OK
    row["reason"] = f"PR-AUC {row['value']:.4f} against a floor of {floor:.4f}"
    return row


def matured_window(as_of: pd.Timestamp, config: MonitoringConfig) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of the scoring days judged at ``as_of``: every label of a charge before ``end``
    has matured by ``as_of``."""
    end = pd.Timestamp(as_of) - pd.Timedelta(days=config.maturity_days)
    return end - pd.Timedelta(days=config.lookback_days), end


def performance(frame: pd.DataFrame, as_of, config: MonitoringConfig,
                reference_pr_auc: float | None) -> dict[str, Any]:
    """Overall, per-day and per-segment PR-AUC of the matured charges in ``frame``."""
    missing = [c for c in (*REQUIRED, *(f"segment_{kind}" for kind in config.segments)) if c not in frame.columns]
    if missing:
        raise ValueError(f"the matured frame lacks columns {missing}")
    as_of = pd.Timestamp(as_of)
    immature = frame["label_matured_at"] > as_of
    if immature.any() or frame["is_fraud"].isna().any():
        raise ValueError(f"{int(immature.sum())} labels had not matured at {as_of.isoformat()}: "
                         "only labels known and matured at as_of may be judged")
    floor = None if reference_pr_auc is None else (1 - config.max_relative_drop) * reference_pr_auc
    frame = frame.assign(is_fraud=frame["is_fraud"].astype(bool))
    overall = {**_judge(frame, config, floor), "segment": "all"}
    days = []
    for day, part in frame.groupby(frame["created_at"].dt.floor("D"), sort=True):
        days.append({**_judge(part, config, floor), "day": day})
    segments = []
    for kind in config.segments:
        values = frame[f"segment_{kind}"].fillna("unknown")
        for value in values.value_counts().head(config.max_segments).index:
            part = frame[values == value]
            segments.append({**_judge(part, config, floor), "segment": f"{kind}={value}"})
    return {"status": overall["status"], "overall": overall, "days": days, "segments": segments,
            "reference_pr_auc": reference_pr_auc, "floor": floor, "reason": overall["reason"]}


def classification_report(frame: pd.DataFrame, threshold: float = 0.5):
    """An Evidently classification report of the matured charges (probabilities of fraud), for the
    HTML artifact; None when there is one class only."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    if frame["is_fraud"].nunique() < 2:
        return None
    data = pd.DataFrame({"target": frame["is_fraud"].astype(int).to_numpy(), "prediction": frame["score"].to_numpy()})
    definition = DataDefinition(classification=[BinaryClassification(target="target", prediction_probas="prediction",
                                                                      pos_label=1)],
                                numerical_columns=["prediction"])
    return Report([ClassificationPreset(probas_threshold=threshold)]).run(
        Dataset.from_pandas(data, data_definition=definition), None)
