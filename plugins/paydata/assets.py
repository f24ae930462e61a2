"""Airflow Asset URIs of the platform: the one place they are spelled.

Imported by DAG files at parse time, so it imports nothing heavy. Producers and consumers name an
Asset through these functions, never by a literal, so a renamed Asset cannot leave a consumer
waiting on a name nobody publishes.
"""

from __future__ import annotations

SCHEME = "paydata"


def cdc_staging(source: str) -> str:
    """Updated when a capture run of ``source`` applied changes to the warehouse staging layer."""
    return f"{SCHEME}://warehouse/staging/{source}"


def cdc_mongo(source: str) -> str:
    """Updated when a capture run of ``source`` applied changes to MongoDB."""
    return f"{SCHEME}://mongo/{source}"


def marts(table: str) -> str:
    """A marts table (or ``aggregates``) of the warehouse."""
    return f"{SCHEME}://warehouse/marts/{table}"


def model(name: str) -> str:
    """A registered model of the MLflow registry (updated when a training run registered a version)."""
    return f"{SCHEME}://mlflow/models/{name}"


def retrain_request(name: str) -> str:
    """Updated when monitoring requests that ``name`` be retrained (drift or a performance drop)."""
    return f"{SCHEME}://mlflow/models/{name}/retrain"


# The sink of each capture Asset (paydata.cdc.sinks: WarehouseSink.name, MongoSink.name).
CAPTURE_SINKS = {"warehouse": cdc_staging, "mongo": cdc_mongo}


def capture_event_extra(report: dict, sink: str) -> dict | None:
    """The metadata of the Asset event a capture run publishes for one sink, or None when the run
    applied nothing to that sink (then no event is published and nothing downstream runs).

    ``report`` is the CDC run report (``CdcEngine.run``). The metadata says what changed: changes
    applied to the sink (streamed plus snapshot rows), the LSN range the run confirmed, and the
    tables with their change counts.
    """
    streamed = int((report.get("applied") or {}).get(sink, 0))
    snapshot = report.get("snapshot") or {}
    snapshot_rows = {table: int(n) for table, n in (snapshot.get("rows") or {}).items() if n}
    if not streamed and not snapshot_rows:
        return None
    tables = dict((report.get("tables") or {}).get(sink, {}))
    for table, rows in snapshot_rows.items():
        tables[table] = tables.get(table, 0) + rows
    return {
        "source": report.get("source"),
        "sink": sink,
        "changes": streamed + sum(snapshot_rows.values()),
        "snapshot_rows": sum(snapshot_rows.values()),
        "start_lsn": report.get("start_lsn"),
        "end_lsn": report.get("end_lsn"),
        "tables": dict(sorted(tables.items())),
        "dead_lettered": int(report.get("dead_lettered") or 0),
    }
