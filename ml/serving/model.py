"""One registered model version, loaded and checked, ready to score.

:func:`load_version` loads ``models:/<name>/<version>`` and its serving configuration (the run's
``serving/serving.json``: thresholds and the reason reference, :mod:`ml.training.serving_config`)
and refuses it (:class:`ModelRefused`) unless its inputs are exactly the current definitions'
``model_features`` and it scores a canary (the reference charge and a charge with every input
unknown) to finite probabilities in [0, 1]. A refused version never reaches a request.

Scoring takes the inputs as a 2-D float array in ``features`` order. A calibrated gradient-boosted
model (:func:`ml.training.model.fit_model`) is unwrapped once at load into its booster (a copy
without the fitted column names, so an array is taken as is) and its sigmoid calibrators: about a
quarter of the cost of the calibrated model's ``predict_proba`` on a one-row DataFrame. The
unwrapped form is used only when it gives the calibrated model's own probabilities on the canary
rows; any other model is called through ``predict_proba`` on a DataFrame.

Reason codes: the inputs whose replacement by the training median lowers the score the most
(occlusion), one extra model call of ``len(features)`` rows per charge, so the reasons are the
model's own, not a separate rule set.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml.training.serving_config import SERVING_ARTIFACT

APPROVE, REVIEW, DECLINE = "approve", "review", "decline"
# A feature is a reason only when it moves the score by at least this much (ties of tiny effects
# would otherwise list arbitrary features for an ordinary charge).
MIN_REASON_EFFECT = 0.001
# The unwrapped model must reproduce the calibrated model's probabilities to this (float64 noise).
UNWRAPPED_TOLERANCE = 1e-12


class ModelRefused(RuntimeError):
    """A version that failed to load or its checks; the old model keeps serving."""


def unwrapped_probabilities(model) -> Callable[[np.ndarray], np.ndarray] | None:
    """Fraud probabilities of a sigmoid-calibrated binary classifier computed from its parts (the
    mean over its calibrated classifiers of ``expit(-(a * decision + b))``, as scikit-learn's
    ``CalibratedClassifierCV.predict_proba``), or None when the model is not one."""
    from scipy.special import expit

    parts = []
    try:
        for calibrated in model.calibrated_classifiers_:
            if calibrated.method != "sigmoid" or len(calibrated.classes) != 2 or len(calibrated.calibrators) != 1:
                return None
            estimator = calibrated.estimator
            estimator = getattr(estimator, "estimator", estimator)  # inside a FrozenEstimator
            if not hasattr(estimator, "decision_function"):
                return None
            unnamed = copy.copy(estimator)  # shallow: shares the fitted trees
            if hasattr(unnamed, "feature_names_in_"):
                del unnamed.feature_names_in_
            calibrator = calibrated.calibrators[0]
            parts.append((unnamed, float(calibrator.a_), float(calibrator.b_)))
    except (AttributeError, TypeError):
        return None
    if not parts:
        return None

    def probabilities(values: np.ndarray) -> np.ndarray:
        total = np.zeros(len(values))
        for estimator, a, b in parts:
            total += expit(-(a * np.asarray(estimator.decision_function(values), dtype=float).ravel() + b))
        return total / len(parts)

    return probabilities


def model_probabilities(model, features: tuple[str, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """Array of inputs -> fraud probabilities: the unwrapped model when it reproduces the model's
    own ``predict_proba`` on a few rows (see the module doc), else ``predict_proba`` on a DataFrame."""

    def through_predict_proba(values: np.ndarray) -> np.ndarray:
        return model.predict_proba(pd.DataFrame(values, columns=list(features)))[:, 1]

    fast = unwrapped_probabilities(model)
    if fast is None:
        return through_predict_proba
    rows = np.linspace(0.0, 50.0, 4 * len(features)).reshape(4, len(features))
    rows[1, ::2] = np.nan
    rows[3, :] = np.nan
    try:
        agrees = np.allclose(fast(rows), through_predict_proba(rows), rtol=0, atol=UNWRAPPED_TOLERANCE)
    except Exception:  # noqa: BLE001 - any failure of the unwrapped form means: do not use it
        agrees = False
    return fast if agrees else through_predict_proba


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    run_id: str
    model: object = field(repr=False)
    features: tuple[str, ...]
    review_threshold: float
    decline_threshold: float
    reference: np.ndarray = field(repr=False)
    loaded_at: float = field(default_factory=time.time)
    predict: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.predict is None:
            object.__setattr__(self, "predict", model_probabilities(self.model, self.features))

    def probabilities(self, values: np.ndarray) -> np.ndarray:
        """Fraud probabilities of rows of inputs (a 2-D float array, columns in ``features`` order)."""
        return self.predict(np.asarray(values, dtype=float))

    def band(self, score: float) -> str:
        if score >= self.decline_threshold:
            return DECLINE
        return REVIEW if score >= self.review_threshold else APPROVE

    def score_with_reasons(self, values: np.ndarray, top: int) -> tuple[np.ndarray, list[list[str]]]:
        """Scores, and per row up to ``top`` feature names whose typical value would lower its score
        most. One model call for both: the rows and their occluded copies are stacked, since a
        gradient-boosted model's cost per call is mostly per tree, not per row."""
        values = np.asarray(values, dtype=float)
        rows, width = values.shape
        if top <= 0 or rows == 0:
            return self.probabilities(values), [[] for _ in range(rows)]
        known = ~np.isnan(self.reference)
        occluded = np.repeat(values, width, axis=0).reshape(rows, width, width)
        columns = np.arange(width)
        occluded[:, columns[known], columns[known]] = self.reference[known]
        stacked = np.concatenate([values, occluded.reshape(rows * width, width)])
        probabilities = self.probabilities(stacked)
        scores = probabilities[:rows]
        effects = scores[:, None] - probabilities[rows:].reshape(rows, width)
        effects[:, ~known] = 0.0
        answers = []
        for row in effects:
            order = np.argsort(-row, kind="stable")[:top]
            answers.append([self.features[i] for i in order if row[i] >= MIN_REASON_EFFECT])
        return scores, answers


def _serving_config(run_id: str) -> dict:
    import mlflow

    return mlflow.artifacts.load_dict(f"runs:/{run_id}/{SERVING_ARTIFACT}")


def check(loaded: LoadedModel) -> None:
    """The canary: the reference charge and an all-unknown charge score to finite probabilities."""
    canary = np.array([np.nan_to_num(loaded.reference, nan=0.0), np.full(len(loaded.features), np.nan)])
    try:
        scores = np.asarray(loaded.score_with_reasons(canary, 1)[0], dtype=float)
    except Exception as exc:
        raise ModelRefused(f"v{loaded.version} failed the canary: {type(exc).__name__}: {exc}") from exc
    if scores.shape != (2,) or not np.all(np.isfinite(scores)) or scores.min() < 0 or scores.max() > 1:
        raise ModelRefused(f"v{loaded.version} failed the canary: scores {scores!r} are not probabilities")


def load_version(client, name: str, version: str, model_features: tuple[str, ...]) -> LoadedModel:
    """Load, configure and check one version (see the module doc); raises ModelRefused."""
    import mlflow

    # models:/ and runs:/ URIs resolve against the process-wide tracking URI (the registry URI
    # follows it unless set): make it the store this client reads, whatever else set it before
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        registered = client.get_model_version(name, str(version))
        model = mlflow.sklearn.load_model(f"models:/{name}/{version}")
        config = _serving_config(registered.run_id)
    except Exception as exc:
        raise ModelRefused(f"v{version} failed to load: {type(exc).__name__}: {exc}") from exc
    features = tuple(config.get("features") or ())
    if features != tuple(model_features):
        raise ModelRefused(f"v{version} was trained on other inputs than the current feature definitions")
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is not None and tuple(fitted) != features:
        raise ModelRefused(f"v{version}: the model's fitted inputs differ from its serving configuration")
    thresholds = config.get("thresholds") or {}
    try:
        review, decline = float(thresholds["review"]), float(thresholds["decline"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelRefused(f"v{version} has no decision thresholds") from exc
    if not 0.0 <= review <= decline <= 1.0:
        raise ModelRefused(f"v{version}: thresholds review {review} / decline {decline} are not ordered in [0, 1]")
    reference = config.get("reason_reference") or {}
    loaded = LoadedModel(name=name, version=str(version), run_id=registered.run_id, model=model, features=features,
                         review_threshold=review, decline_threshold=decline,
                         reference=np.array([np.nan if reference.get(f) is None else float(reference[f])
                                             for f in features], dtype=float))
    check(loaded)
    return loaded
