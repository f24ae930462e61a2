"""Figures logged with every training run: PR curves (model and baseline), calibration, feature
importance (permutation importance on the held-out part: HGB has no impurity importances)."""

from __future__ import annotations

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4.5))


def pr_curve(labels, model_probabilities, baseline_scores):
    from sklearn.metrics import PrecisionRecallDisplay

    fig, ax = _figure()
    PrecisionRecallDisplay.from_predictions(labels, model_probabilities, name="model", ax=ax)
    PrecisionRecallDisplay.from_predictions(labels, baseline_scores, name="rules baseline", ax=ax)
    ax.set_title("Precision-recall on the held-out window")
    return fig


def calibration(labels, model_probabilities, baseline_probabilities):
    from sklearn.calibration import CalibrationDisplay

    fig, ax = _figure()
    CalibrationDisplay.from_predictions(labels, model_probabilities, n_bins=10, strategy="quantile",
                                        name="model", ax=ax)
    CalibrationDisplay.from_predictions(labels, baseline_probabilities, n_bins=10, strategy="quantile",
                                        name="rules baseline", ax=ax)
    ax.set_title("Calibration on the held-out window")
    return fig


def feature_importance(model, inputs, labels, *, max_rows: int = 20000, seed: int = 0):
    """Permutation importance (drop in average precision) on at most ``max_rows`` held-out rows;
    returns (figure, {feature: importance})."""
    from sklearn.inspection import permutation_importance

    rng = np.random.default_rng(seed)
    index = np.arange(len(inputs)) if len(inputs) <= max_rows else rng.choice(len(inputs), max_rows, replace=False)
    result = permutation_importance(model, inputs.iloc[index], np.asarray(labels)[index],
                                    scoring="average_precision", n_repeats=3, random_state=seed)
    importances = dict(zip(inputs.columns, result.importances_mean, strict=True))
    ordered = sorted(importances.items(), key=lambda item: item[1])
    fig, ax = _figure()
    fig.set_size_inches(6, 8)
    ax.barh([name for name, _ in ordered], [value for _, value in ordered])
    ax.set_xlabel("drop in PR-AUC when permuted")
    ax.set_title("Permutation importance (held-out window)")
    fig.tight_layout()
    return fig, {name: float(value) for name, value in importances.items()}
