"""The monitoring settings (``ml/monitoring/monitoring.yaml``): loaded once, checked up front.

:func:`load_config` raises :class:`ConfigError` naming the entry that is missing or out of range,
so a bad threshold fails the first task instead of producing alerts nobody can interpret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_PATH = Path(__file__).with_name("monitoring.yaml")
# Evidently's methods the settings may name (distances and tests), and ours (ml.monitoring.drift)
DISTANCE_METHODS = {"wasserstein", "jensenshannon", "psi", "kl_div", "hellinger", "psi_quantile"}
PVALUE_METHODS = {"ks", "chisquare", "z", "anderson", "mannw", "cramer_von_mises", "t_test", "fisher_exact"}


class ConfigError(ValueError):
    """A missing or invalid monitoring setting; the message names it."""


@dataclass(frozen=True)
class Check:
    method: str
    threshold: float

    @property
    def is_pvalue(self) -> bool:
        """p-value tests drift *below* their threshold; distances at or above it."""
        return self.method in PVALUE_METHODS


@dataclass(frozen=True)
class MonitoringConfig:
    model_name: str
    alias: str
    current_days: float
    reference_rows: int
    sample_seed: int
    max_current_rows: int
    min_current_rows: int
    min_column_values: int
    numeric: Check
    categorical: Check
    categorical_columns: tuple[str, ...]
    per_column: dict[str, Check]
    log_columns: tuple[str, ...]
    drift_share: float
    prediction: Check
    maturity_days: float
    lookback_days: float
    max_relative_drop: float
    min_labelled: int
    min_fraud: int
    segments: tuple[str, ...]
    max_segments: int
    cooldown_days: float
    scores: dict[str, str]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def column_check(self, column: str) -> Check:
        if column in self.per_column:
            return self.per_column[column]
        return self.categorical if column in self.categorical_columns else self.numeric


SEGMENTS = {"merchant_country", "merchant_risk_tier"}


def _get(raw: dict, path: str):
    value: Any = raw
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ConfigError(f"monitoring setting {path!r} is missing")
        value = value[part]
    return value


def _number(raw: dict, path: str, *, low: float, high: float = float("inf"), integer: bool = False):
    value = _get(raw, path)
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        raise ConfigError(f"monitoring setting {path!r} must be a {'whole ' if integer else ''}number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"monitoring setting {path!r} must be between {low} and {high}, got {value!r}")
    return value


def _check(raw: dict, path: str) -> Check:
    method = _get(raw, f"{path}.method")
    if method not in DISTANCE_METHODS | PVALUE_METHODS:
        raise ConfigError(f"monitoring setting {path}.method: unknown method {method!r}; "
                          f"known: {sorted(DISTANCE_METHODS | PVALUE_METHODS)}")
    return Check(method, float(_number(raw, f"{path}.threshold", low=0.0, high=1e6)))


def parse_config(raw: dict) -> MonitoringConfig:
    """A checked :class:`MonitoringConfig` from the parsed YAML (raises ConfigError)."""
    if not isinstance(raw, dict):
        raise ConfigError("the monitoring settings must be a mapping")
    for path in ("model.name", "model.alias"):
        _get(raw, path)
    per_column = _get(raw, "feature_drift.per_column") or {}
    segments = tuple(_get(raw, "performance.segments") or ())
    unknown = set(segments) - SEGMENTS
    if unknown:
        raise ConfigError(f"performance.segments: unknown {sorted(unknown)}; known: {sorted(SEGMENTS)}")
    scores = _get(raw, "scores")
    for key in ("table", "charge_column", "score_column", "version_column", "created_column", "scored_column"):
        _get(raw, f"scores.{key}")
    return MonitoringConfig(
        model_name=str(_get(raw, "model.name")), alias=str(_get(raw, "model.alias")),
        current_days=float(_number(raw, "windows.current_days", low=1 / 24, high=90)),
        reference_rows=_number(raw, "windows.reference_rows", low=100, integer=True),
        sample_seed=_number(raw, "windows.sample_seed", low=0, integer=True),
        max_current_rows=_number(raw, "windows.max_current_rows", low=100, integer=True),
        min_current_rows=_number(raw, "windows.min_current_rows", low=1, integer=True),
        min_column_values=_number(raw, "windows.min_column_values", low=1, integer=True),
        numeric=_check(raw, "feature_drift.numeric"), categorical=_check(raw, "feature_drift.categorical"),
        categorical_columns=tuple(_get(raw, "feature_drift.categorical_columns") or ()),
        per_column={name: _check(raw, f"feature_drift.per_column.{name}") for name in per_column},
        log_columns=tuple(_get(raw, "feature_drift.log_columns") or ()),
        drift_share=float(_number(raw, "feature_drift.drift_share", low=0.0, high=1.0)),
        prediction=_check(raw, "prediction_drift"),
        maturity_days=float(_number(raw, "performance.maturity_days", low=1, high=365)),
        lookback_days=float(_number(raw, "performance.lookback_days", low=1, high=365)),
        max_relative_drop=float(_number(raw, "performance.max_relative_drop", low=0.0, high=1.0)),
        min_labelled=_number(raw, "performance.min_labelled", low=1, integer=True),
        min_fraud=_number(raw, "performance.min_fraud", low=1, integer=True),
        segments=segments, max_segments=_number(raw, "performance.max_segments", low=1, integer=True),
        cooldown_days=float(_number(raw, "decision.cooldown_days", low=0, high=365)),
        scores={key: str(value) for key, value in scores.items()}, raw=raw)


def load_config(path: Path | str | None = None, **overrides: Any) -> MonitoringConfig:
    """The settings from ``path`` (default ``monitoring.yaml`` beside this module); ``overrides``
    replace top-level sections' keys, as ``{"windows": {"current_days": 2}}`` (tests, benchmarks)."""
    raw = yaml.safe_load(Path(path or CONFIG_PATH).read_text())
    for section, values in overrides.items():
        raw[section] = {**(raw.get(section) or {}), **values}
    return parse_config(raw)
