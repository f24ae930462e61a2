"""The two steps of the ``fraud_train`` DAG as plain functions (connections from ``paydata.settings``).

Both connect to the warehouse as the ``ml`` role (``paydata_warehouse_ml``), never as its owner.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ml.features.definitions import load_definitions

MIN_ROWS = 200


def _time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"{value!r}: give a timezone (e.g. +00:00)")
    return moment


def make_training_set(params: dict[str, Any]) -> dict[str, Any]:
    """Build (or reuse) the training set the params describe; returns its reference."""
    from ml.features.offline import build_training_set
    from paydata import settings
    from paydata.warehouse.labels import default_as_of

    conn = settings.pg_connect(settings.WAREHOUSE_ML_CONN_ID)
    try:
        as_of = _time(params.get("label_as_of")) or default_as_of(conn)
        if as_of is None:
            return {"training_set_id": None, "skipped": "the marts were never built"}
        return build_training_set(conn, load_definitions(), label_as_of=as_of,
                                  maturity=dt.timedelta(days=int(params.get("maturity_days") or 60)),
                                  window_start=_time(params.get("window_start")),
                                  window_end=_time(params.get("window_end")))
    finally:
        conn.close()


def train_from_reference(reference: dict[str, Any]) -> dict[str, Any]:
    """Train, register and gate on the referenced set; skip (with the reason) when it is too small."""
    from ml.training.run import train_and_register
    from paydata import settings

    if not reference.get("training_set_id"):
        return {"skipped": reference.get("skipped", "no training set")}
    if reference["row_count"] < MIN_ROWS or reference["fraud_count"] < 10:
        return {"skipped": f"training set {reference['training_set_id']} has {reference['row_count']} matured "
                           f"labels ({reference['fraud_count']} fraud); at least {MIN_ROWS} and 10 are needed"}
    conn = settings.pg_connect(settings.WAREHOUSE_ML_CONN_ID)
    try:
        result = train_and_register(conn, int(reference["training_set_id"]))
    finally:
        conn.close()
    return {key: result[key] for key in ("run_id", "model_name", "model_version", "training_set_id", "promoted",
                                         "reason", "model_metrics", "baseline_metrics", "fit_seconds", "rows",
                                         "fraud_rate")}
