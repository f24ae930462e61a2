"""What the scorer needs besides the model, chosen at training time and stored with the version.

* **Decision bands** on the calibrated probability: ``decline`` at the cost-minimising threshold
  on the validation part (``metrics.best_threshold``: a missed fraud costs 100 USD, a false decline
  5 USD); ``review`` at the score above which the next ``REVIEW_SHARE`` of validation charges
  fall, so analysts see a bounded queue (never above ``decline``).
* **Reason reference**: the training part's median of each model input. A reason code is a feature
  whose replacement by its median lowers the score the most (occlusion against a typical charge);
  medians of the training rows only, never of held-out data.

Logged as the artifact ``serving/serving.json`` of the run and the thresholds also as version tags
(``serving.review_threshold``, ``serving.decline_threshold``) so they show in the registry UI. The
scorer refuses a version without them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ml.training import metrics as m

SERVING_ARTIFACT = "serving/serving.json"
REVIEW_SHARE = 0.03
SCHEMA_VERSION = 1


def decision_thresholds(labels, probabilities) -> dict[str, float]:
    """``{"review": r, "decline": d}`` with ``0 <= r <= d <= 1`` (see the module doc)."""
    probabilities = np.asarray(probabilities, dtype=float)
    decline = float(m.best_threshold(np.asarray(labels, dtype=bool), probabilities))
    below = probabilities[probabilities < decline]
    review = float(np.quantile(below, 1 - REVIEW_SHARE)) if len(below) else decline
    return {"review": min(review, decline), "decline": decline}


def reason_reference(train_inputs: pd.DataFrame) -> dict[str, float | None]:
    """Median of every input over the training rows (None for a column without values)."""
    medians = train_inputs.median(skipna=True)
    return {column: (None if pd.isna(medians[column]) else float(medians[column])) for column in train_inputs.columns}


def serving_config(features: list[str], labels, probabilities, train_inputs: pd.DataFrame) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "features": list(features),
            "thresholds": decision_thresholds(labels, probabilities),
            "reason_reference": reason_reference(train_inputs)}
