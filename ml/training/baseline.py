"""The rules baseline an analyst would write: points for velocity and mismatch thresholds.

The rules are data (``baseline_rules`` in the feature definitions); the score is the sum of the
points of the rules a charge meets (a missing value meets no rule). To compare calibration, the
points are mapped to fraud probabilities by an isotonic fit on the validation part.
"""

from __future__ import annotations

import operator

import numpy as np
import pandas as pd

from ml.features.definitions import Definitions

OPERATORS = {">=": operator.ge, ">": operator.gt, "<": operator.lt, "<=": operator.le, "==": operator.eq}


def rules_score(inputs: pd.DataFrame, definitions: Definitions) -> np.ndarray:
    """Points per row (float); ``inputs`` holds the features the rules name (e.g. the model matrix)."""
    score = np.zeros(len(inputs))
    for rule in definitions.baseline_rules:
        values = pd.to_numeric(inputs[rule["feature"]], errors="coerce")
        met = OPERATORS[rule["op"]](values, rule["value"]).fillna(False).to_numpy(dtype=bool)
        score += np.where(met, float(rule["points"]), 0.0)
    return score


class RulesBaseline:
    """Rules score -> probability, calibrated on validation data (isotonic in the points)."""

    def __init__(self, definitions: Definitions):
        self.definitions = definitions
        self.calibration = None

    def fit(self, inputs: pd.DataFrame, labels) -> RulesBaseline:
        from sklearn.isotonic import IsotonicRegression

        self.calibration = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        self.calibration.fit(rules_score(inputs, self.definitions), np.asarray(labels, dtype=float))
        return self

    def score(self, inputs: pd.DataFrame) -> np.ndarray:
        return rules_score(inputs, self.definitions)

    def predict_proba(self, inputs: pd.DataFrame) -> np.ndarray:
        if self.calibration is None:
            raise RuntimeError("fit the baseline's calibration first")
        return self.calibration.predict(self.score(inputs))
