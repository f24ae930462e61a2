"""Derived features, the time-ordered split, the rules baseline, metrics and the gate rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.features.definitions import load_definitions
from ml.registry.gate import BRIER_TOLERANCE, PR_AUC_MARGIN, decide
from ml.training import metrics
from ml.training.baseline import rules_score
from ml.training.data import add_derived, model_matrix, time_split

DEFINITIONS = load_definitions()


def frame(n: int = 100, fraud_every: int = 10) -> pd.DataFrame:
    base = pd.Timestamp("2026-01-01", tz="UTC")
    data = {name: np.zeros(n) for name in DEFINITIONS.stored_columns}
    data.update(charge_id=np.arange(n), created_at=[base + pd.Timedelta(minutes=i) for i in range(n)],
                is_fraud=[i % fraud_every == 0 for i in range(n)], card_country_code=["FR"] * n,
                session_ip_country_code=["FR"] * n)
    return pd.DataFrame(data)


def test_derived_features_handle_missing_and_zero_inputs():
    f = pd.DataFrame({"customer_declines_24h": [1.0, 0.0, np.nan], "customer_charges_24h": [4.0, 0.0, 2.0],
                      "card_country_code": ["FR", "FR", None], "session_ip_country_code": ["DE", "FR", "FR"],
                      "customer_device_charges_30d": [0.0, 3.0, np.nan]})
    for column in DEFINITIONS.stored_columns:
        if column not in f:
            f[column] = 1.0
    out = add_derived(f, DEFINITIONS)
    assert out["customer_decline_ratio_24h"].tolist()[:1] == [0.25]
    assert np.isnan(out["customer_decline_ratio_24h"][1]) and np.isnan(out["customer_decline_ratio_24h"][2])
    assert out["bin_ip_country_mismatch"].tolist()[:2] == [1.0, 0.0] and np.isnan(out["bin_ip_country_mismatch"][2])
    assert out["device_new_for_customer"].tolist()[:2] == [1.0, 0.0]
    assert list(model_matrix(f, DEFINITIONS).columns) == list(DEFINITIONS.model_features)


def test_split_is_by_time_and_never_shuffled():
    f = frame().sample(frac=1.0, random_state=3)          # arrival order does not matter
    parts = time_split(f)
    assert [len(parts[p]) for p in ("train", "validation", "test")] == [70, 15, 15]
    assert parts["train"]["created_at"].max() < parts["validation"]["created_at"].min()
    assert parts["validation"]["created_at"].max() < parts["test"]["created_at"].min()
    # rows sharing the cut time all go to the later part
    tied = frame()
    tied.loc[69:72, "created_at"] = tied.loc[70, "created_at"]
    cut = time_split(tied)
    assert len(cut["train"]) == 69 and cut["train"]["created_at"].max() < cut["validation"]["created_at"].min()
    with pytest.raises(ValueError, match="one class"):
        time_split(frame(fraud_every=1000))


def test_rules_score_adds_points_of_met_rules_only():
    inputs = pd.DataFrame({name: [np.nan, np.nan] for name in DEFINITIONS.model_features})
    inputs.loc[0, "bin_ip_country_mismatch"] = 1.0
    inputs.loc[0, "card_declines_1h"] = 2.0
    inputs.loc[0, "hour_of_day"] = 3.0
    assert rules_score(inputs, DEFINITIONS).tolist() == [7.0, 0.0]


def test_metrics_on_a_known_ranking():
    labels = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0], dtype=bool)
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05])
    result = metrics.score_metrics(labels, scores, threshold=0.5)
    assert result["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["precision_top_0_5pct"] == 1.0            # the single top row is fraud
    assert metrics.recall_at_fpr(labels, scores, fpr=0.125) == 1.0   # one genuine (0.8) may be flagged
    assert metrics.recall_at_fpr(labels, scores, fpr=0.0) == 0.5
    # declining >= 0.5: two caught, one genuine declined, none missed
    assert result["expected_cost_per_1000"] == pytest.approx(1000 * metrics.COST_FALSE_DECLINE / 10)


def test_gate_rule():
    assert decide({"pr_auc": 0.4, "brier": 0.01}, None, 0.3)[0]
    assert not decide({"pr_auc": 0.3 + PR_AUC_MARGIN / 2, "brier": 0.01}, None, 0.3)[0]
    champion = {"pr_auc": 0.5, "brier": 0.010}
    assert decide({"pr_auc": 0.52, "brier": 0.010}, champion, 0.3)[0]
    promote, reason = decide({"pr_auc": 0.502, "brier": 0.009}, champion, 0.3)
    assert not promote and "margin" in reason
    promote, reason = decide({"pr_auc": 0.6, "brier": 0.010 + 2 * BRIER_TOLERANCE}, champion, 0.3)
    assert not promote and "Brier" in reason
