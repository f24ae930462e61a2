"""The frames a monitoring pass compares, read from the warehouse with bound values.

* :func:`window_frame`: the stored features (and segments) of the charges of a time window, a
  repeatable sample when larger than ``max_rows`` (the reference is a sample of the champion's
  training window, the current window is the last day);
* :func:`matured_frame`: the charges of the matured scoring days with their labels **as known at
  as_of** (derived in the same transaction by :func:`paydata.warehouse.labels.derive_charge_labels`,
  never the published labels, which may have been derived later).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from psycopg2 import sql

from ml.features.definitions import Definitions
from ml.features.offline import offline_columns, offline_table
from paydata.sql import load_sql
from paydata.warehouse.labels import derive_charge_labels


def _query(name: str, definitions: Definitions) -> sql.Composed:
    columns = sql.SQL(", ").join(sql.SQL("f.{}").format(sql.Identifier(name)) for name, _ in
                                 offline_columns(definitions))
    return sql.SQL(load_sql(name)).format(columns=columns, table=offline_table(definitions))


def _frame(cursor, definitions: Definitions) -> pd.DataFrame:
    names = [column.name for column in cursor.description]
    frame = pd.DataFrame(cursor.fetchall(), columns=names)
    text = {name for name, kind in offline_columns(definitions) if kind == "text"}
    for name in names:
        if name in ("created_at", "label_matured_at"):
            frame[name] = pd.to_datetime(frame[name], utc=True)
        elif name not in text and not name.startswith("segment_") and name not in ("is_fraud", "charge_id"):
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    return frame


def window_frame(conn, definitions: Definitions, window_start: dt.datetime, window_end: dt.datetime, *,
                 max_rows: int, seed: int = 0) -> pd.DataFrame:
    """Features of the charges created in ``[window_start, window_end)`` (at most ``max_rows``)."""
    if window_end <= window_start:
        raise ValueError(f"empty window [{window_start}, {window_end})")
    try:
        with conn.cursor() as cursor:
            cursor.execute(_query("warehouse/queries/monitoring/window_features.sql", definitions),
                           {"window_start": window_start, "window_end": window_end, "max_rows": int(max_rows),
                            "seed": int(seed)})
            frame = _frame(cursor, definitions)
    finally:
        conn.rollback()
    return frame.sort_values(["created_at", "charge_id"], kind="stable").reset_index(drop=True)


def matured_frame(conn, definitions: Definitions, as_of: dt.datetime, window_start: dt.datetime,
                  window_end: dt.datetime, maturity: dt.timedelta) -> pd.DataFrame:
    """The charges of ``[window_start, window_end)`` whose labels had matured at ``as_of``, with
    ``is_fraud`` and ``label_matured_at`` as known then."""
    try:
        with conn.cursor() as cursor:
            derive_charge_labels(cursor, as_of, maturity)
            cursor.execute(_query("warehouse/queries/monitoring/matured_features.sql", definitions),
                           {"window_start": window_start, "window_end": window_end})
            frame = _frame(cursor, definitions)
    finally:
        conn.rollback()   # drops the temp label table; nothing was written
    frame["is_fraud"] = frame["is_fraud"].astype(bool)
    return frame
