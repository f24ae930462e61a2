"""Drift of the model's inputs and of its scores, with Evidently, one method and threshold per column.

Pure functions of two data frames (no database, no MLflow): :func:`feature_drift` compares every
input the reference and the current window share, :func:`prediction_drift` the score. Each
returns the numbers (per column: method, threshold, score, drifted) and the Evidently snapshot the
caller saves as HTML. Thresholds and methods come from :mod:`ml.monitoring.config`.

Evidently's ``psi`` bins numeric values into equal-width bins over the combined range, which puts
nearly every fraud score (a long right tail near 0) into one bin; ``psi_quantile`` (registered
here) bins by the reference's quantiles instead, the usual PSI for scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ml.monitoring.config import Check, MonitoringConfig

OK, DRIFT, INSUFFICIENT = "ok", "drift", "insufficient_data"
_registered = False


def _psi_quantile(reference: pd.Series, current: pd.Series, feature_type, threshold: float,
                  bins: int = 10) -> tuple[float, bool]:
    """PSI over the reference's quantile bins (empty bins floored at 1e-4, as is customary)."""
    quantiles = np.unique(np.quantile(np.asarray(reference, dtype=float), np.linspace(0, 1, bins + 1)))
    edges = np.concatenate(([-np.inf], quantiles[1:-1], [np.inf]))   # ties merge bins
    expected = np.histogram(reference, edges)[0] / len(reference)
    actual = np.histogram(current, edges)[0] / len(current)
    expected, actual = np.clip(expected, 1e-4, None), np.clip(actual, 1e-4, None)
    value = float(np.sum((actual - expected) * np.log(actual / expected)))
    return value, value >= threshold


def register_methods() -> None:
    """Make ``psi_quantile`` a method Evidently knows by name (idempotent)."""
    global _registered
    if _registered:
        return
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    register_stattest(StatTest(name="psi_quantile", display_name="PSI (reference quantile bins)",
                               allowed_feature_types=[ColumnType.Numerical], default_threshold=0.2),
                      _psi_quantile)
    _registered = True


def _drifted(check: Check, score: float) -> bool:
    return score < check.threshold if check.is_pvalue else score >= check.threshold


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed)


def compare_columns(reference: pd.DataFrame, current: pd.DataFrame, checks: dict[str, Check],
                    categorical: set[str], *, min_values: int) -> dict[str, Any]:
    """Run one Evidently report of ``ValueDrift`` per column (``checks``: column -> method and
    threshold); returns per column its result, and the snapshot (None when nothing was comparable)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    register_methods()
    missing = sorted({c for c in checks if c not in reference.columns or c not in current.columns})
    if missing:
        raise ValueError(f"columns {missing} are missing from the reference or the current window")
    results, compared = [], []
    for column, check in checks.items():
        counts = (int(reference[column].notna().sum()), int(current[column].notna().sum()))
        row = {"column": column, "method": check.method, "threshold": check.threshold,
               "reference_values": counts[0], "current_values": counts[1], "score": None, "status": INSUFFICIENT}
        if min(counts) >= min_values and pd.concat([reference[column], current[column]]).nunique() > 1:
            compared.append(column)
        results.append(row)
    if not compared:
        return {"columns": results, "snapshot": None}
    definition = DataDefinition(numerical_columns=[c for c in compared if c not in categorical],
                                categorical_columns=[c for c in compared if c in categorical])
    report = Report([ValueDrift(column=c, method=checks[c].method, threshold=checks[c].threshold) for c in compared],
                    include_tests=True)
    snapshot = report.run(Dataset.from_pandas(current[compared], data_definition=definition),
                          Dataset.from_pandas(reference[compared], data_definition=definition))
    scores = {m["config"]["column"]: float(m["value"]) for m in snapshot.dict()["metrics"]
              if m["config"]["type"].endswith("ValueDrift")}
    for row in results:
        if row["column"] in scores:
            row["score"] = scores[row["column"]]
            row["status"] = DRIFT if _drifted(checks[row["column"]], row["score"]) else OK
    return {"columns": results, "snapshot": snapshot}


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame, config: MonitoringConfig,
                  columns: list[str]) -> dict[str, Any]:
    """Drift of each input in ``columns`` (``log_columns`` compared as log(1 + x)) and the share of
    compared inputs that drifted.

    Status ``drift`` when that share reaches ``feature_drift.drift_share``; ``insufficient_data``
    when the current window has fewer than ``windows.min_current_rows`` rows or no input could be
    compared (then nothing alerts). Raises ValueError when a column is missing from either frame."""
    missing = sorted({c for c in columns if c not in reference.columns or c not in current.columns})
    if missing:
        raise ValueError(f"columns {missing} are missing from the reference or the current window")
    if len(current) < config.min_current_rows:
        return {"status": INSUFFICIENT, "share": None, "compared": 0, "drifted": [], "columns": [],
                "snapshot": None, "reason": f"{len(current)} current rows, fewer than {config.min_current_rows}"}
    current = _sample(current, config.max_current_rows, config.sample_seed)
    logged = [c for c in config.log_columns if c in columns]
    if logged:   # heavy-tailed amounts are compared on a log scale (monitoring.yaml)
        reference, current = (frame.assign(**{c: np.log1p(frame[c].clip(lower=0)) for c in logged})
                              for frame in (reference, current))
    result = compare_columns(reference, current, {c: config.column_check(c) for c in columns},
                             set(config.categorical_columns), min_values=config.min_column_values)
    compared = [row for row in result["columns"] if row["status"] != INSUFFICIENT]
    drifted = [row["column"] for row in compared if row["status"] == DRIFT]
    if not compared:
        return {**result, "status": INSUFFICIENT, "share": None, "compared": 0, "drifted": [],
                "reason": "no input has enough values on both sides"}
    share = len(drifted) / len(compared)
    return {**result, "status": DRIFT if share >= config.drift_share else OK, "share": share,
            "compared": len(compared), "drifted": drifted, "threshold": config.drift_share,
            "reason": f"{len(drifted)} of {len(compared)} inputs drifted ({share:.1%}; alert at "
                      f"{config.drift_share:.0%})"}


def prediction_drift(reference_scores, current_scores, config: MonitoringConfig) -> dict[str, Any]:
    """Drift of the score distribution (``prediction_drift`` method and threshold)."""
    reference = pd.DataFrame({"score": np.asarray(reference_scores, dtype=float)})
    current = pd.DataFrame({"score": np.asarray(current_scores, dtype=float)})
    if len(current) < config.min_current_rows or len(reference) < config.min_column_values:
        return {"status": INSUFFICIENT, "score": None, "threshold": config.prediction.threshold,
                "method": config.prediction.method, "snapshot": None,
                "reason": f"{len(current)} current and {len(reference)} reference scores; at least "
                          f"{config.min_current_rows} and {config.min_column_values} are needed"}
    result = compare_columns(reference, current, {"score": config.prediction}, set(), min_values=1)
    row = result["columns"][0]
    return {"status": row["status"], "score": row["score"], "threshold": row["threshold"], "method": row["method"],
            "snapshot": result["snapshot"],
            "reason": f"{row['method']} {row['score']:.4f} (alert at {row['threshold']})"
            if row["score"] is not None else "scores are constant"}
