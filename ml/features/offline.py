"""The offline store: event ledgers, the point-in-time feature table and versioned training sets.

Every build is one transaction on the warehouse, serialised by an advisory lock:

1. ``charge_event`` / ``dispute_event`` take the charges and disputes the marts loaded since the
   last build, as first seen (their OLTP commit position is ``known_lsn``; rows are never updated);
2. the new charges become the spine, and the features of each are computed at its own
   ``created_at`` and position by :func:`ml.features.sql_builder.feature_query`, plus the session
   signals from Mongo (:mod:`ml.features.sessions`), and inserted into the offline table;
3. ``features.build_state`` records the marts positions the store is complete up to.

Feature rows are immutable: a charge's features are computed once, from what was known before it,
so a later payment, dispute or late-loaded row cannot change them. A training set
(:func:`build_training_set`) is the labelled charges of a window, with the positions and label
time it was built from; its rows join the immutable feature rows.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

from psycopg2 import sql

from ml.features.definitions import Definitions, definitions_hash
from ml.features.sessions import signals_for_charges
from ml.features.sql_builder import feature_names, feature_query
from ml.features.window_builder import FORMULATIONS, rebuild_query
from paydata.sql import load_sql
from paydata.warehouse.labels import FRAUD_DISPUTE_REASONS, LABEL_MATURITY, derive_charge_labels

OFFLINE_STORE = "offline"
FULL_BUILD_FORMULATIONS = (*FORMULATIONS, "lateral")


def offline_table(definitions: Definitions) -> sql.Identifier:
    return sql.Identifier("features", definitions.offline_table)


def _session_columns(definitions: Definitions) -> list[tuple[str, str]]:
    return [(item["name"], "text" if item["name"] in definitions.category_columns else "double precision")
            for item in definitions.session]


def offline_columns(definitions: Definitions) -> list[tuple[str, str]]:
    """(name, SQL type) of every stored feature, in the order of the offline table."""
    names = feature_names(definitions)
    return ([(name, "text" if name in definitions.category_columns else "double precision") for name in names]
            + _session_columns(definitions))


def _column_list(columns: list[tuple[str, str]]) -> sql.Composable:
    return sql.SQL(",\n    ").join(sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
                                    for name, kind in columns)


def ensure_features(conn, definitions: Definitions) -> None:
    """Create the features schema and the definitions' offline table (idempotent; commits)."""
    with conn.cursor() as cursor:
        cursor.execute(load_sql("warehouse/queries/features/schema.sql"))
        cursor.execute(sql.SQL(load_sql("warehouse/queries/features/offline_table_create.sql")).format(
            table=offline_table(definitions), columns=_column_list(offline_columns(definitions)),
            known_index=sql.Identifier(f"{definitions.offline_table}_known_idx")))
    conn.commit()


class FeaturesNotDefined(RuntimeError):
    """The definitions' offline table is missing and this session (the ml role) may not create it."""


def prepare_features(conn, definitions: Definitions) -> None:
    """Create the feature tables if this session may run DDL (the owner), else check, with reads
    only, that the migrate step created them (``python -m paydata.migrations apply --db warehouse``)."""
    from paydata.warehouse.schema import MIGRATE_COMMAND, may_define

    if may_define(conn)[1]:
        ensure_features(conn, definitions)
        return
    with conn.cursor() as cursor:
        cursor.execute(load_sql("warehouse/queries/features/offline_table_exists.sql"), {"table": definitions.offline_table})
        found = cursor.fetchone()[0]
    conn.rollback()
    if not found:
        raise FeaturesNotDefined(f"features.{definitions.offline_table} does not exist and this role may not create "
                                 f"it: run `{MIGRATE_COMMAND}` as the warehouse owner")


def marts_positions(cursor) -> dict[str, int]:
    cursor.execute(load_sql("warehouse/queries/features/marts_watermark.sql"))
    return {source: int(lsn) for source, lsn in cursor.fetchall()}


def store_positions(cursor, store: str) -> dict[str, int]:
    cursor.execute(load_sql("warehouse/queries/features/build_state_select.sql"), {"store": store})
    return {source: int(lsn) for source, lsn in cursor.fetchall()}


def _load_session_signals(cursor, definitions: Definitions, sessions_db, points: str, params: dict) -> int:
    """Session signals of the points ``points`` selects (charge, session, time) into ``session_signal``."""
    cursor.execute(sql.SQL(load_sql("warehouse/queries/features/session_signal_create.sql")).format(
        columns=_column_list(_session_columns(definitions))))
    if sessions_db is None or not definitions.session:
        return 0
    cursor.execute(load_sql(points), params)
    rows = signals_for_charges(definitions, sessions_db, cursor.fetchall())
    names = [item["name"] for item in definitions.session]
    buffer = io.StringIO()
    for row in rows:
        values = [row["charge_id"], *(row[name] for name in names)]
        buffer.write("\t".join("\\N" if value is None else str(value) for value in values) + "\n")
    buffer.seek(0)
    cursor.copy_expert(sql.SQL("COPY session_signal ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, ["charge_id", *names]))).as_string(cursor), buffer)
    return len(rows)


def _insert_features(cursor, definitions: Definitions, statement: str, query: sql.Composable, params: dict) -> int:
    names = feature_names(definitions)
    session_names = [item["name"] for item in definitions.session]
    values = ([sql.SQL("f.{}").format(sql.Identifier(n)) for n in names]
              + [sql.SQL("ss.{}").format(sql.Identifier(n)) for n in session_names])
    cursor.execute(sql.SQL(load_sql(statement)).format(
        table=offline_table(definitions), columns=sql.SQL(", ").join(map(sql.Identifier, names + session_names)),
        values=sql.SQL(", ").join(values), query=query), params)
    return max(cursor.rowcount, 0)


def _materialise_spine(cursor, definitions: Definitions) -> int:
    """The LATERAL builder over ``feature_spine`` (session signals already loaded)."""
    query, params = feature_query(definitions)
    return _insert_features(cursor, definitions, "warehouse/queries/features/offline_insert.sql", query, params)


def _materialise_ledger(cursor, definitions: Definitions, sessions_db, to_lsn: int,
                        formulation: str) -> dict[str, int]:
    """Every ledger charge at or below ``to_lsn`` (a full build) through the set-based formulation
    (:func:`ml.features.window_builder.rebuild_query`), then the LATERAL builder for the charges it
    leaves out (``window``: charges whose frames hold a row loaded after them; ``lateral``: every
    charge, the formulation the benchmark compares against)."""
    cursor.execute(load_sql("warehouse/queries/features/full_build_memory.sql"))
    _load_session_signals(cursor, definitions, sessions_db, "warehouse/queries/features/ledger_sessions.sql", {"to_lsn": to_lsn})
    set_based = 0
    if formulation != "lateral":
        query, params = rebuild_query(definitions, formulation)
        set_based = _insert_features(cursor, definitions, "warehouse/queries/features/offline_insert_full.sql", query,
                                     dict(params, to_lsn=to_lsn))
    cursor.execute(load_sql("warehouse/queries/features/spine_create.sql"))
    cursor.execute(sql.SQL(load_sql("warehouse/queries/features/spine_from_unbuilt.sql")).format(table=offline_table(definitions)),
                   {"to_lsn": to_lsn})
    lateral = _materialise_spine(cursor, definitions)
    return {"set_based": set_based, "lateral": lateral}


def build_features(conn, definitions: Definitions, *, sessions_db=None, rebuild: bool = False,
                   formulation: str = "lateral") -> dict[str, Any]:
    """Bring the offline store up to the marts' positions (one transaction); return counts and positions.

    ``sessions_db``: the Mongo database with the ``sessions`` collection (None: session features
    stay NULL). ``rebuild``: recompute every charge's features from the event ledgers (same
    result as the incremental builds, since rows keep their first-seen positions). A rebuild and the
    first build compute every charge at once, by ``formulation``: ``lateral`` (the LATERAL builder
    for every charge, the default: fastest or close to it in bench/fraud_bench.py, see
    docs/benchmarks.md) or one of the set-based queries of :mod:`ml.features.window_builder`
    (``join``, ``window``), which give the same rows; later builds compute the new charges with the
    LATERAL builder.
    """
    if formulation not in FULL_BUILD_FORMULATIONS:
        raise ValueError(f"formulation {formulation!r} not in {FULL_BUILD_FORMULATIONS}")
    prepare_features(conn, definitions)
    try:
        with conn.cursor() as cursor:
            cursor.execute(load_sql("warehouse/queries/features/build_lock.sql"))
            target = marts_positions(cursor)
            done = store_positions(cursor, OFFLINE_STORE)
            from_lsn = done.get("oltp", 0)
            window = {"from_lsn": from_lsn, "to_lsn": target["oltp"]}
            cursor.execute(load_sql("warehouse/queries/features/charge_event_ingest.sql"), window)
            charges = max(cursor.rowcount, 0)
            cursor.execute(load_sql("warehouse/queries/features/dispute_event_ingest.sql"),
                           dict(window, fraud_reasons=list(FRAUD_DISPUTE_REASONS)))
            disputes = max(cursor.rowcount, 0)
            if rebuild or not done:
                # a full build: every row is recomputed from the ledgers (identically: rows keep
                # their first-seen positions), rows of an unrecorded earlier build included
                cursor.execute(sql.SQL(load_sql("warehouse/queries/features/offline_delete.sql")).format(
                    table=offline_table(definitions)))
                paths = _materialise_ledger(cursor, definitions, sessions_db, target["oltp"], formulation)
            else:
                cursor.execute(load_sql("warehouse/queries/features/spine_create.sql"))
                cursor.execute(load_sql("warehouse/queries/features/spine_from_charges.sql"),
                               {"from_lsn": from_lsn, "to_lsn": target["oltp"]})
                _load_session_signals(cursor, definitions, sessions_db, "warehouse/queries/features/spine_sessions.sql", {})
                paths = {"set_based": 0, "lateral": _materialise_spine(cursor, definitions)}
            written = paths["set_based"] + paths["lateral"]
            for source, lsn in target.items():
                cursor.execute(load_sql("warehouse/queries/features/build_state_upsert.sql"),
                               {"store": OFFLINE_STORE, "source": source, "commit_lsn": lsn})
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return {"oltp_lsn": target["oltp"], "reference_lsn": target["reference"], "from_lsn": from_lsn,
            "charge_events": charges, "dispute_events": disputes, "feature_rows": written,
            "set_based_rows": paths["set_based"], "lateral_rows": paths["lateral"],
            "offline_table": f"features.{definitions.offline_table}"}


def build_training_set(conn, definitions: Definitions, *, label_as_of: dt.datetime,
                       maturity: dt.timedelta = LABEL_MATURITY, window_start: dt.datetime | None = None,
                       window_end: dt.datetime | None = None) -> dict[str, Any]:
    """Materialise the labelled charges of ``[window_start, window_end)`` with labels as known at
    ``label_as_of``, at the offline store's positions; an identical version is reused, not rebuilt.
    Returns the set's reference (id, positions, counts), never the data."""
    prepare_features(conn, definitions)
    try:
        with conn.cursor() as cursor:
            positions = store_positions(cursor, OFFLINE_STORE)
            if "oltp" not in positions:
                raise LookupError("the offline feature store was never built: run build_features first")
            version = {"definitions_name": definitions.name, "definitions_hash": definitions_hash(definitions),
                       "offline_table": f"features.{definitions.offline_table}",
                       "oltp_lsn": positions["oltp"], "reference_lsn": positions.get("reference", 0),
                       "label_as_of": label_as_of, "label_maturity": maturity,
                       "window_start": window_start, "window_end": window_end}
            cursor.execute(load_sql("warehouse/queries/features/training_set_insert.sql"), version)
            created = cursor.fetchone()
            if created is None:
                cursor.execute(load_sql("warehouse/queries/features/training_set_find.sql"), version)
                training_set_id = cursor.fetchone()[0]
            else:
                training_set_id = created[0]
                derive_charge_labels(cursor, label_as_of, maturity)
                cursor.execute(sql.SQL(load_sql("warehouse/queries/features/training_labels_insert.sql")).format(
                    table=offline_table(definitions)), dict(version, training_set_id=training_set_id))
                cursor.execute(load_sql("warehouse/queries/features/training_set_finish.sql"), {"training_set_id": training_set_id})
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return training_set_reference(conn, training_set_id)


def training_set_reference(conn, training_set_id: int) -> dict[str, Any]:
    with conn.cursor() as cursor:
        cursor.execute(load_sql("warehouse/queries/features/training_set_select.sql"), {"training_set_id": training_set_id})
        names = [column.name for column in cursor.description]
        row = cursor.fetchone()
    conn.rollback()
    if row is None:
        raise LookupError(f"no training set {training_set_id}")
    found = dict(zip(names, row, strict=True))
    for key in ("label_as_of", "window_start", "window_end", "first_created_at", "last_created_at"):
        found[key] = found[key].isoformat() if found[key] is not None else None
    found["label_maturity_days"] = found.pop("label_maturity") / dt.timedelta(days=1)
    return found


def load_training_frame(conn, definitions: Definitions, training_set_id: int):
    """The training set as a pandas DataFrame (charge_id, created_at, is_fraud, stored features),
    oldest first; read with COPY, the fastest path out of Postgres."""
    import pandas as pd

    columns = offline_columns(definitions)
    statement = sql.SQL(load_sql("warehouse/queries/features/training_frame_copy.sql")).format(
        columns=sql.SQL(", ").join(sql.SQL("f.{}").format(sql.Identifier(name)) for name, _ in columns),
        table=offline_table(definitions), training_set_id=sql.Literal(int(training_set_id)))
    buffer = io.StringIO()
    with conn.cursor() as cursor:
        cursor.copy_expert(statement.as_string(cursor), buffer)
    conn.rollback()
    buffer.seek(0)
    dtypes = {name: ("string" if kind == "text" else "float64") for name, kind in columns}
    frame = pd.read_csv(buffer, dtype=dtypes)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True, format="ISO8601")
    frame["is_fraud"] = frame["is_fraud"].map({"t": True, "f": False, True: True, False: False}).astype(bool)
    return frame
