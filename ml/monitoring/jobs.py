"""The steps of the ``fraud_monitor`` DAG as plain functions (connections from ``paydata.settings``).

The warehouse connection is the ``ml`` role's (``paydata_warehouse_ml``), never its owner's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def run_pass(params: dict[str, Any]) -> dict[str, Any]:
    """One monitoring pass at ``params['as_of']`` (ISO time with a timezone), by default the latest
    OLTP commit the marts hold (a time from the data: reruns agree). Returns its summary."""
    from ml.monitoring.run import monitor
    from paydata import settings
    from paydata.sql import load_sql
    from paydata.warehouse.labels import default_as_of

    conn = settings.pg_connect(settings.WAREHOUSE_ML_CONN_ID)
    try:
        with conn.cursor() as cursor:
            cursor.execute(load_sql("warehouse/queries/monitoring/table_exists.sql"), {"table": "marts.freshness"})
            built = cursor.fetchone()[0]
        conn.rollback()
        text = params.get("as_of")
        as_of = dt.datetime.fromisoformat(text) if text else (default_as_of(conn) if built else None)
        if as_of is None:
            return {"decision": "insufficient_data", "alert": False, "reason": "the marts were never built"}
        if as_of.tzinfo is None:
            raise ValueError(f"as_of {text!r}: give a timezone (e.g. +00:00)")
        return monitor(conn, as_of=as_of)
    finally:
        conn.close()


def retrain_event(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The metadata of the retrain Asset event, or None when the pass did not request retraining."""
    if summary.get("decision") != "retrain":
        return None
    return {key: summary.get(key) for key in ("monitoring_run_id", "mlflow_run_id", "model_version", "as_of",
                                              "reason", "drift_share", "pr_auc")}
