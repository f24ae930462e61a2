"""From a training set to model inputs: derived features and the time-ordered split.

:func:`add_derived` computes the derived features of the definitions (ratios, mismatches, "is new")
from stored values; the scorer calls the same function on one row, so offline and online inputs
agree. :func:`time_split` cuts by ``created_at`` (never at random: fraud patterns drift, and a
random split leaks the future into training).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.features.definitions import Definitions

SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


def add_derived(frame: pd.DataFrame, definitions: Definitions) -> pd.DataFrame:
    """A copy of ``frame`` with every derived feature added (NaN where an input is missing)."""
    out = frame.copy()
    for item in definitions.derived:
        args = [out[name] for name in item["args"]]
        if item["op"] == "ratio":
            numerator, denominator = (pd.to_numeric(a, errors="coerce").astype(float) for a in args)
            out[item["name"]] = numerator / denominator.where(denominator != 0)
        elif item["op"] == "not_equal":
            left, right = args
            known = left.notna() & right.notna()
            out[item["name"]] = np.where(known, (left.astype(object) != right.astype(object)).astype(float), np.nan)
        elif item["op"] == "is_zero":
            value = pd.to_numeric(args[0], errors="coerce").astype(float)
            out[item["name"]] = np.where(value.notna(), (value == 0).astype(float), np.nan)
    return out


def model_matrix(frame: pd.DataFrame, definitions: Definitions) -> pd.DataFrame:
    """The model's inputs in definition order, float64 (NaN for missing values)."""
    derived = add_derived(frame, definitions)
    return derived.loc[:, list(definitions.model_features)].astype("float64")


def time_split(frame: pd.DataFrame, fractions: tuple[float, float, float] = SPLIT_FRACTIONS
               ) -> dict[str, pd.DataFrame]:
    """Train / validation / test by ``created_at``: cut at the times below which the first 70 % and
    85 % of rows fall; rows at a cut time go to the later part, so no part holds a row later than
    the first row of the next part. Raises ValueError when a part would be empty."""
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"split fractions must be positive and sum to 1, got {fractions}")
    ordered = frame.sort_values(["created_at", "charge_id"], kind="stable").reset_index(drop=True)
    times = ordered["created_at"]
    n = len(ordered)
    first_cut = times.iloc[min(n - 1, int(n * fractions[0]))]
    second_cut = times.iloc[min(n - 1, int(n * (fractions[0] + fractions[1])))]
    parts = {"train": ordered[times < first_cut], "validation": ordered[(times >= first_cut) & (times < second_cut)],
             "test": ordered[times >= second_cut]}
    empty = [name for name, part in parts.items() if part.empty or part["is_fraud"].nunique() < 2]
    if empty:
        raise ValueError(f"time split leaves {empty} empty or with one class ({n} rows); use a longer window")
    return {name: part.reset_index(drop=True) for name, part in parts.items()}


def split_summary(parts: dict[str, pd.DataFrame]) -> dict[str, object]:
    """Row counts, fraud rates and time ranges per part (logged with the run)."""
    summary: dict[str, object] = {}
    for name, part in parts.items():
        summary[f"{name}_rows"] = len(part)
        summary[f"{name}_fraud_rate"] = float(part["is_fraud"].mean())
        summary[f"{name}_from"] = part["created_at"].min().isoformat()
        summary[f"{name}_to"] = part["created_at"].max().isoformat()
    return summary
