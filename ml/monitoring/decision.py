"""From the checks of one monitoring pass to a decision: nothing, retrain, or an alert held back by
the cooldown.

* An **alert** is raised when the inputs drifted (share of drifted inputs at or above
  ``feature_drift.drift_share``), the score drifted (``prediction_drift``), or the matured PR-AUC
  fell more than ``performance.max_relative_drop`` below the champion's held-out PR-AUC.
* An alert **requests retraining** unless the previous request for the same model was less than
  ``decision.cooldown_days`` before ``as_of`` (a drift that persists would otherwise retrain on every
  run); then the decision is ``cooldown`` and the alert is still recorded.
* Without a champion, or with too little data for every check, the decision is ``insufficient_data``.

Retraining only trains a challenger: the registry gate still decides whether it becomes champion.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ml.monitoring.config import MonitoringConfig

NONE, RETRAIN, COOLDOWN, INSUFFICIENT = "none", "retrain", "cooldown", "insufficient_data"


def decide(feature: dict[str, Any], prediction: dict[str, Any], performance: dict[str, Any],
           *, as_of: dt.datetime, last_request: dt.datetime | None, config: MonitoringConfig) -> dict[str, Any]:
    """The decision, whether it alerts, and why (each triggering check with its numbers)."""
    triggers = []
    if feature.get("status") == "drift":
        triggers.append(f"feature drift: {feature['reason']}: {', '.join(feature['drifted'])}")
    if prediction.get("status") == "drift":
        triggers.append(f"prediction drift: {prediction['reason']}")
    if performance.get("status") == "drop":
        triggers.append(f"performance drop: {performance['reason']} (held-out "
                        f"{performance['reference_pr_auc']:.4f}, at most {config.max_relative_drop:.0%} lower)")
    checks = (feature.get("status"), prediction.get("status"), performance.get("status"))
    if not triggers:
        if all(status in (None, INSUFFICIENT) for status in checks):
            return {"decision": INSUFFICIENT, "alert": False, "reason": "too little data for every check"}
        return {"decision": NONE, "alert": False,
                "reason": "within thresholds" + ("" if INSUFFICIENT not in checks else
                                                 " (some checks had too little data)")}
    reason = "; ".join(triggers)
    cooldown = dt.timedelta(days=config.cooldown_days)
    if last_request is not None and as_of - last_request < cooldown:
        return {"decision": COOLDOWN, "alert": True,
                "reason": f"{reason}; retraining was requested at {last_request.isoformat()}, less than "
                          f"{config.cooldown_days:g} days before"}
    return {"decision": RETRAIN, "alert": True, "reason": reason}
