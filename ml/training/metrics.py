"""Metrics of a fraud score on labelled charges.

PR-AUC (average precision) is the headline: fraud is rare, and ROC-AUC looks good even for scores
that would decline many genuine customers. Operational views: recall at a 1 % false-positive rate
(how much fraud is stopped when 1 in 100 genuine charges is flagged), precision in the top 0.5 %
(what a review queue of that size finds), Brier score (calibration and sharpness of the
probabilities), and the expected cost of deciding at a threshold, with the stated costs below.
"""

from __future__ import annotations

import numpy as np

# Stated costs (USD): a missed fraud costs the chargeback (an average stolen-card amount) plus the
# dispute fee; a false decline costs the lost margin and the customer's goodwill.
COST_MISSED_FRAUD = 100.0
COST_FALSE_DECLINE = 5.0
FPR_TARGET = 0.01
TOP_FRACTION = 0.005


def recall_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float = FPR_TARGET) -> float:
    """Share of fraud scored above the threshold that flags at most ``fpr`` of genuine charges."""
    labels = np.asarray(labels, dtype=bool)
    genuine = np.sort(scores[~labels])[::-1]
    allowed = int(np.floor(fpr * len(genuine)))
    threshold = genuine[allowed] if allowed < len(genuine) else -np.inf
    return float(np.mean(scores[labels] > threshold)) if labels.any() else float("nan")


def precision_at_top(labels: np.ndarray, scores: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """Fraud share among the ``fraction`` highest scores (at least one row; ties broken by order)."""
    count = max(1, int(round(fraction * len(scores))))
    top = np.argsort(-scores, kind="stable")[:count]
    return float(np.mean(np.asarray(labels, dtype=bool)[top]))


def expected_cost(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> float:
    """Cost per 1,000 charges of declining every charge with probability >= ``threshold``."""
    labels = np.asarray(labels, dtype=bool)
    declined = probabilities >= threshold
    cost = COST_MISSED_FRAUD * np.sum(labels & ~declined) + COST_FALSE_DECLINE * np.sum(~labels & declined)
    return float(1000.0 * cost / max(1, len(labels)))


def best_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The threshold with the lowest expected cost (chosen on validation, applied on test)."""
    candidates = np.unique(np.concatenate([probabilities, [COST_FALSE_DECLINE / (COST_FALSE_DECLINE +
                                                                                 COST_MISSED_FRAUD)]]))
    if len(candidates) > 2000:
        candidates = np.quantile(candidates, np.linspace(0, 1, 2000))
    costs = [expected_cost(labels, probabilities, t) for t in candidates]
    return float(candidates[int(np.argmin(costs))])


def ranking_metrics(labels, scores) -> dict[str, float]:
    """The metrics that depend only on the order of the scores (any monotone score will do)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    return {
        "pr_auc": float(average_precision_score(labels, scores)),
        "roc_auc": float(roc_auc_score(labels, scores)),
        "recall_at_1pct_fpr": recall_at_fpr(labels, scores),
        "precision_top_0_5pct": precision_at_top(labels, scores),
    }


def score_metrics(labels, probabilities, threshold: float) -> dict[str, float]:
    """Every metric of one probability score on one labelled set."""
    from sklearn.metrics import brier_score_loss

    labels = np.asarray(labels, dtype=bool)
    probabilities = np.asarray(probabilities, dtype=float)
    return {
        **ranking_metrics(labels, probabilities),
        "brier": float(brier_score_loss(labels, probabilities)),
        "expected_cost_per_1000": expected_cost(labels, probabilities, threshold),
        "threshold": float(threshold),
        "fraud_rate": float(labels.mean()),
        "rows": float(len(labels)),
    }
