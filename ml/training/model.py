"""The fraud model: gradient-boosted trees (scikit-learn HistGradientBoosting) with sigmoid (Platt)
calibration fitted on the validation part (never on training rows: boosted trees are over-confident
on what they were fitted to). Sigmoid, not isotonic: with a few dozen fraud cases in the validation
part, isotonic steps merge scores into ties and cost ranking quality; a sigmoid keeps the order.

Threads: training uses every core OpenMP offers; scoring one charge does not, because HGB with
OpenMP threads has a p99 in the hundreds of milliseconds on tiny inputs (scikit-learn#30662), so
:func:`predict_proba_pinned` runs small batches on one thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.08,
    "max_iter": 400,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
    "early_stopping": True,
    "validation_fraction": 0.1,
    "n_iter_no_change": 30,
    "random_state": 0,
}
# Types skops must trust to load the calibrated HGB (mlflow 3 saves scikit-learn models with skops).
SKOPS_TRUSTED_TYPES = [
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
]
SMALL_BATCH = 64


def fit_model(train_x, train_y, validation_x, validation_y, params: dict[str, Any] | None = None):
    """Fit HGB on the training part, calibrate it (sigmoid) on the validation part; return the
    calibrated classifier (``predict_proba`` gives probabilities of fraud in column 1)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.frozen import FrozenEstimator

    booster = HistGradientBoostingClassifier(**{**DEFAULT_PARAMS, **(params or {})})
    # a feature with no value at all in training (e.g. session signals before sessions are ingested)
    # cannot be binned; fitted as a constant it is never split on, so NaN at scoring time is harmless
    empty = [column for column in train_x.columns if train_x[column].isna().all()]
    booster.fit(train_x.fillna(dict.fromkeys(empty, 0.0)) if empty else train_x, np.asarray(train_y, dtype=int))
    calibrated = CalibratedClassifierCV(FrozenEstimator(booster), method="sigmoid")
    calibrated.fit(validation_x, np.asarray(validation_y, dtype=int))
    return calibrated


def booster_of(model):
    """The HGB inside the calibrated model (for iteration counts)."""
    return model.calibrated_classifiers_[0].estimator.estimator


def predict_proba_pinned(model, inputs) -> np.ndarray:
    """Fraud probabilities; batches of at most ``SMALL_BATCH`` rows run on one OpenMP thread."""
    if len(inputs) > SMALL_BATCH:
        return model.predict_proba(inputs)[:, 1]
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        return model.predict_proba(inputs)[:, 1]


def untrusted_types(model) -> list[str]:
    """Types skops would refuse to load (a test keeps SKOPS_TRUSTED_TYPES complete)."""
    import skops.io

    return skops.io.get_untrusted_types(data=skops.io.dumps(model))
