"""The warehouse record of monitoring: ``ml.monitoring_run`` (one row per pass, with the decision
and its evidence) and ``ml.monitoring`` (one row per number: window, check, metric, segment,
value, threshold, status). SQL in ``include/sql/warehouse/queries/monitoring/``; values bound.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from paydata.sql import load_sql

SCHEMA_TABLES = ("ml.monitoring_run", "ml.monitoring")


def ensure_schema(conn) -> None:
    """Create the monitoring tables as the owner (the migrate step); as ``ml``, check they exist."""
    from paydata.warehouse.schema import apply_or_require

    apply_or_require(conn, "warehouse/queries/monitoring/schema.sql", SCHEMA_TABLES)


def last_retrain_request(conn, model_name: str, as_of: dt.datetime) -> dt.datetime | None:
    """When retraining of ``model_name`` was last requested before ``as_of`` (None: never)."""
    ensure_schema(conn)
    try:
        with conn.cursor() as cursor:
            cursor.execute(load_sql("warehouse/queries/monitoring/last_retrain_request.sql"), {"model_name": model_name, "as_of": as_of})
            return cursor.fetchone()[0]
    finally:
        conn.rollback()


def record(conn, run: dict[str, Any], metrics: list[dict[str, Any]]) -> int:
    """Write one pass and its numbers in one transaction (a rerun replaces them); returns its id."""
    ensure_schema(conn)
    try:
        with conn.cursor() as cursor:
            cursor.execute(load_sql("warehouse/queries/monitoring/run_upsert.sql"),
                           {**run, "evidence": json.dumps(run["evidence"], default=str, sort_keys=True)})
            run_id = cursor.fetchone()[0]
            cursor.execute(load_sql("warehouse/queries/monitoring/metrics_delete.sql"), {"monitoring_run_id": run_id})
            for metric in metrics:
                cursor.execute(load_sql("warehouse/queries/monitoring/metric_insert.sql"),
                               {"row_count": None, "fraud_count": None, "method": None, **metric,
                                "monitoring_run_id": run_id})
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return int(run_id)
