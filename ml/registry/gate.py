"""The champion/challenger gate of the ``fraud_scoring`` registered model.

Rule (:func:`decide`): the challenger and the champion are scored on the same held-out window
(the newest part of the challenger's training set, which neither was fitted or calibrated on).

* With a champion: promote when the challenger's PR-AUC exceeds the champion's by at least
  ``PR_AUC_MARGIN`` **and** its Brier score is not worse than the champion's by more than
  ``BRIER_TOLERANCE`` (better ranking bought with worse calibration is not a win: downstream
  thresholds are set on the probabilities).
* Without one (the first model): promote when its PR-AUC beats the rules baseline's by
  ``PR_AUC_MARGIN``.

Every decision, with both scores, is written to the run's tags, the model version's tags and
``features.model_decision`` in the warehouse.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from paydata.sql import load_sql

MODEL_NAME = "fraud_scoring"
CHALLENGER = "challenger"
CHAMPION = "champion"
PR_AUC_MARGIN = 0.005
BRIER_TOLERANCE = 0.0005


def decide(challenger: dict[str, float], champion: dict[str, float] | None,
           baseline_pr_auc: float) -> tuple[bool, str]:
    """(promote, reason) from the scores on the held-out window."""
    if champion is None:
        if challenger["pr_auc"] >= baseline_pr_auc + PR_AUC_MARGIN:
            return True, (f"first model: PR-AUC {challenger['pr_auc']:.4f} beats the rules baseline "
                          f"{baseline_pr_auc:.4f} by at least {PR_AUC_MARGIN}")
        return False, (f"first model: PR-AUC {challenger['pr_auc']:.4f} does not beat the rules baseline "
                       f"{baseline_pr_auc:.4f} by {PR_AUC_MARGIN}")
    gain = challenger["pr_auc"] - champion["pr_auc"]
    if gain < PR_AUC_MARGIN:
        return False, f"PR-AUC gain {gain:+.4f} below the margin {PR_AUC_MARGIN}"
    if challenger["brier"] > champion["brier"] + BRIER_TOLERANCE:
        return False, (f"PR-AUC gain {gain:+.4f} but Brier {challenger['brier']:.5f} worse than the champion's "
                       f"{champion['brier']:.5f}")
    return True, f"PR-AUC gain {gain:+.4f} >= {PR_AUC_MARGIN}, Brier {challenger['brier']:.5f} not worse"


def _scores(labels, probabilities) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss

    labels = np.asarray(labels, dtype=bool)
    return {"pr_auc": float(average_precision_score(labels, probabilities)),
            "brier": float(brier_score_loss(labels, probabilities))}


def _champion_probabilities(client, model_name: str, holdout_inputs) -> tuple[str | None, np.ndarray | None]:
    """The current champion's version and its probabilities on the held-out inputs (its own columns)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None, None
    model = mlflow.sklearn.load_model(f"models:/{model_name}@{CHAMPION}")
    columns = list(getattr(model, "feature_names_in_", holdout_inputs.columns))
    missing = [c for c in columns if c not in holdout_inputs.columns]
    if missing:   # the champion was trained on other definitions: it cannot be scored on this window
        raise LookupError(f"champion v{version.version} needs features {missing} the held-out window lacks")
    return version.version, model.predict_proba(holdout_inputs[columns])[:, 1]


def run_gate(client, *, model_name: str, challenger_version: str, challenger_probabilities,
             holdout_inputs, holdout_labels, baseline_pr_auc: float, run_id: str | None,
             warehouse_conn=None, training_set_id: int | None = None) -> dict[str, Any]:
    """Score challenger and champion on the same held-out window, decide, move the alias, record.

    Returns the decision (promoted, reason, both scores, versions)."""
    challenger = _scores(holdout_labels, challenger_probabilities)
    try:
        champion_version, champion_probabilities = _champion_probabilities(client, model_name, holdout_inputs)
        champion = None if champion_probabilities is None else _scores(holdout_labels, champion_probabilities)
        promote, reason = decide(challenger, champion, baseline_pr_auc)
    except LookupError as exc:
        champion_version, champion = None, None
        promote, reason = decide(challenger, None, baseline_pr_auc)
        reason = f"{exc}; judged as a first model: {reason}"
    client.set_registered_model_alias(model_name, CHALLENGER, challenger_version)
    if promote:
        client.set_registered_model_alias(model_name, CHAMPION, challenger_version)
    decision = {"model_name": model_name, "challenger_version": str(challenger_version),
                "champion_version": None if champion_version is None else str(champion_version),
                "training_set_id": training_set_id, "run_id": run_id,
                "challenger_pr_auc": challenger["pr_auc"], "challenger_brier": challenger["brier"],
                "champion_pr_auc": champion["pr_auc"] if champion else None,
                "champion_brier": champion["brier"] if champion else None,
                "baseline_pr_auc": float(baseline_pr_auc), "promoted": promote, "reason": reason}
    tags = {f"gate.{key}": str(value) for key, value in decision.items() if key not in ("model_name", "run_id")}
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(challenger_version), key, value)
        if run_id:
            client.set_tag(run_id, key, value)
    if warehouse_conn is not None:
        decision["decision_id"] = record_decision(warehouse_conn, decision)
    return decision


def record_decision(warehouse_conn, decision: dict[str, Any]) -> int:
    """Insert the gate's ``decision`` into ``features.model_decision`` and commit; its id.

    The ml role (``fraud_train``) may not run DDL: the table is the migrate step's, and only a
    session that may define (the owner) creates it here.
    """
    from paydata.warehouse.schema import apply_or_require

    apply_or_require(warehouse_conn, "warehouse/queries/features/schema.sql", ("features.model_decision",))
    try:
        with warehouse_conn.cursor() as cursor:
            cursor.execute(load_sql("warehouse/queries/features/model_decision_insert.sql"), decision)
            decision_id = cursor.fetchone()[0]
        warehouse_conn.commit()
    except BaseException:
        warehouse_conn.rollback()
        raise
    return decision_id
