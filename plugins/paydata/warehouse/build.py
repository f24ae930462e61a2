"""Incremental, idempotent build of the marts from the CDC staging layer.

Each build processes exactly the staging rows whose position ``(_commit_lsn, _index_in_txn)`` lies
above the watermark the previous build recorded in ``marts.build_state`` and at or below the
high-water mark in ``staging.cdc_offsets`` (per source: positions of different databases are not
comparable). Everything, including the new watermark and ``marts.freshness``, commits in one
REPEATABLE READ transaction: the staging snapshot and the offsets agree, and a failed build leaves
the marts exactly as they were. A full rebuild truncates the marts in the same transaction and runs
the same steps from watermark zero, so it produces the same rows as any sequence of incremental
builds. Both facts are built by the same steps: the ledger fact (``fct_balance_transaction``) and the
charge-attempt fact (``fct_charge``). Because the ledger fact table is empty and exclusively locked
there, a full rebuild also drops its secondary indexes, loads the facts with a plain insert and
recreates the indexes from their catalog definitions, all in the same transaction.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from paydata.sql import load_sql
from paydata.warehouse.quality import QualityCheckError, collect_violations
from paydata.warehouse.schema import may_define, prepare_marts

SOURCES = ("reference", "oltp")
ZERO_POSITION = (0, -1)
MAX_REPORTED_ROWS = 50

TABLE_SOURCE = {
    "dim_currency": "reference",
    "dim_country": "reference",
    "dim_merchant": "reference",
    "dim_customer": "oltp",
    "dim_payment_method": "oltp",
    "dim_date": "oltp",
    "fct_balance_transaction": "oltp",
    "fct_charge": "oltp",
}

# Order matters: dimensions before the facts that look them up, inference after the real rows of
# the window, the merchant repoint after both the dimension and the facts are in place.
STEPS = (
    ("dim_currency", "warehouse/queries/build/dim_currency_upsert.sql"),
    ("dim_country", "warehouse/queries/build/dim_country_upsert.sql"),
    ("dim_merchant_versions", "warehouse/queries/build/dim_merchant_versions.sql"),
    ("dim_merchant", "warehouse/queries/build/dim_merchant_replace.sql"),
    ("dim_customer", "warehouse/queries/build/dim_customer_upsert.sql"),
    ("dim_payment_method", "warehouse/queries/build/dim_payment_method_upsert.sql"),
    ("affected_facts", "warehouse/queries/build/fact_affected.sql"),
    ("affected_charges", "warehouse/queries/build/charge_affected.sql"),
)
LOAD_STEPS = (
    ("staged_facts", "warehouse/queries/build/fact_stage.sql"),
    ("staged_charges", "warehouse/queries/build/charge_stage.sql"),
    ("inferred_merchants", "warehouse/queries/build/dim_merchant_infer.sql"),
    ("inferred_customers", "warehouse/queries/build/dim_customer_infer.sql"),
    ("inferred_payment_methods", "warehouse/queries/build/dim_payment_method_infer.sql"),
    ("facts_written", "warehouse/queries/build/fct_balance_transaction_upsert.sql"),
    ("charges_written", "warehouse/queries/build/fct_charge_upsert.sql"),
    ("facts_repointed", "warehouse/queries/build/fct_repoint_merchant_version.sql"),
    ("charges_repointed", "warehouse/queries/build/fct_charge_repoint_merchant_version.sql"),
    ("dates_added", "warehouse/queries/build/dim_date_extend.sql"),
)
# A full rebuild loads the emptied fact table with a plain insert (no conflict to resolve) and
# rebuilds the fact's secondary indexes once, right after that load, before anything reads them.
FULL_REBUILD_FACT_LOAD = "warehouse/queries/build/fct_balance_transaction_insert.sql"
FACT_LOAD_STEP = "facts_written"
# Sorting 10M keys of the widest fact index takes a few hundred MB; less spills the sort to disk.
INDEX_BUILD_MAINTENANCE_WORK_MEM = "512MB"


class BuildInputError(ValueError):
    """Staged rows the marts refuse (e.g. a negative fee, an unknown currency); nothing was loaded.

    ``violations`` lists ``(balance_transaction_id, problem)``; fix the staging rows (or the
    missing reference data) and run the build again.
    """

    def __init__(self, violations: list[tuple[int, str]]):
        self.violations = violations
        shown = "; ".join(f"balance_transaction {row_id}: {problem}" for row_id, problem in violations)
        more = " (first 50 shown)" if len(violations) >= MAX_REPORTED_ROWS else ""
        super().__init__(f"warehouse build stopped, nothing loaded: {len(violations)} bad staged rows{more}: {shown}")


class StagingBehindError(RuntimeError):
    """The staging offsets are below the marts' watermark (staging was reset); run a full rebuild."""


def _window_params(watermark: dict[str, tuple[int, int]], high_water: dict[str, tuple[int, int]]) -> dict:
    params: dict[str, Any] = {}
    for source in SOURCES:
        params[f"{source}_from_lsn"], params[f"{source}_from_idx"] = watermark[source]
        params[f"{source}_to_lsn"], params[f"{source}_to_idx"] = high_water[source]
    return params


def _read_positions(cursor, statement: str) -> dict[str, tuple[int, int]]:
    cursor.execute(load_sql(statement))
    found = {source: (int(lsn), int(idx)) for source, lsn, idx in cursor.fetchall()}
    return {source: found.get(source, ZERO_POSITION) for source in SOURCES}


def _drop_fact_secondary_indexes(cursor) -> list[tuple[str, str]]:
    """Drop the fact table's indexes that back no constraint; return ``(name, definition)`` of each.

    Only for a full rebuild, inside its transaction after the TRUNCATE: a rollback restores them.
    The definitions come from the catalog (``pg_get_indexdef``), so whatever created the indexes
    stays their only definition; storage parameters set later with ALTER INDEX are not carried.
    """
    cursor.execute(load_sql("warehouse/queries/build/fct_secondary_indexes_select.sql"))
    indexes = cursor.fetchall()
    drop = sql.SQL(load_sql("warehouse/queries/build/fct_secondary_index_drop.sql"))
    for index_schema, index_name, _ in indexes:
        cursor.execute(drop.format(index=sql.Identifier(index_schema, index_name)))
    return [(index_name, definition) for _, index_name, definition in indexes]


def _recreate_indexes(cursor, indexes: list[tuple[str, str]]) -> None:
    """Re-run the catalog definitions ``_drop_fact_secondary_indexes`` returned, one sorted build each."""
    cursor.execute(load_sql("warehouse/queries/build/index_build_memory.sql"),
                   {"maintenance_work_mem": INDEX_BUILD_MAINTENANCE_WORK_MEM})
    for _, definition in indexes:
        # the catalog's own CREATE INDEX text for an index that existed a moment ago in this transaction
        cursor.execute(definition)


def _recreate_indexes_through_function(cursor) -> None:
    """The owner's function re-runs the definitions ``security.begin_full_rebuild`` kept."""
    cursor.execute(load_sql("warehouse/queries/build/index_build_memory.sql"),
                   {"maintenance_work_mem": INDEX_BUILD_MAINTENANCE_WORK_MEM})
    cursor.execute(load_sql("warehouse/queries/build/recreate_rebuild_indexes.sql"))


def build(conn, full_rebuild: bool = False, *, quality_checks: bool = True) -> dict[str, Any]:
    """Bring the marts up to the staging high-water mark; return a report of counts and positions.

    ``conn`` is a psycopg2 connection to the warehouse, not inside a transaction. Builds are
    serialised by an advisory lock. With ``full_rebuild`` the marts are emptied and rebuilt from
    all staging rows in the same transaction; the fact table's secondary indexes are dropped before
    the fact load and recreated from their own definitions after it (``report["fact_indexes_rebuilt"]``
    names them), so a failed rebuild leaves data and indexes as they were.

    Raises (after rolling back: nothing partial is ever committed):
    * :class:`BuildInputError` naming the staged ledger rows that break a rule;
    * :class:`~paydata.warehouse.quality.QualityCheckError` when the loaded rows fail a quality
      check (``quality_checks=True``, the default);
    * :class:`StagingBehindError` when staging is behind the marts' watermark.
    The next build after the cause is fixed processes the same window again.
    """
    started = time.monotonic()
    prepare_marts(conn)
    through_functions, _ = may_define(conn)
    with conn.cursor() as cursor:
        cursor.execute(load_sql("warehouse/queries/build/build_lock.sql"))
    conn.commit()
    previous_isolation = conn.isolation_level
    conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ)
    try:
        report = _build_in_transaction(conn, full_rebuild, quality_checks, through_functions)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.set_session(isolation_level=previous_isolation)
        with conn.cursor() as cursor:
            cursor.execute(load_sql("warehouse/queries/build/build_unlock.sql"))
        conn.commit()
    report["duration_s"] = round(time.monotonic() - started, 3)
    return report


def _build_in_transaction(conn, full_rebuild: bool, quality_checks: bool, through_functions: bool) -> dict[str, Any]:
    with conn.cursor() as cursor:
        cursor.execute(load_sql("warehouse/queries/build/session_planner.sql"))
        high_water = _read_positions(cursor, "warehouse/queries/build/staging_offsets_select.sql")
        dropped_indexes: list[tuple[str, str]] = []
        if full_rebuild and through_functions:
            # the owner's functions truncate, drop and (after the load) recreate: no ownership needed
            cursor.execute(load_sql("warehouse/queries/build/begin_full_rebuild.sql"))
            dropped_indexes = [(name, "") for (name,) in cursor.fetchall()]
            watermark = {source: ZERO_POSITION for source in SOURCES}
        elif full_rebuild:
            cursor.execute(load_sql("warehouse/queries/build/truncate_marts.sql"))
            dropped_indexes = _drop_fact_secondary_indexes(cursor)
            watermark = {source: ZERO_POSITION for source in SOURCES}
        else:
            watermark = _read_positions(cursor, "warehouse/queries/build/build_state_select.sql")
        behind = [s for s in SOURCES if high_water[s] < watermark[s]]
        if behind:
            raise StagingBehindError(
                f"staging offsets of {behind} are below the marts watermark "
                f"({ {s: (high_water[s], watermark[s]) for s in behind} }): staging was reset, "
                "run `python -m paydata.warehouse rebuild`"
            )
        report: dict[str, Any] = {
            "full_rebuild": full_rebuild,
            "sources": {
                s: {"from": list(watermark[s]), "to": list(high_water[s])} for s in SOURCES
            },
            "rows": {},
            "fact_indexes_rebuilt": [name for name, _ in dropped_indexes],
        }
        if not full_rebuild and high_water == watermark:
            report["up_to_date"] = True
            report["fact_window"] = None
            return report
        report["up_to_date"] = False
        params = _window_params(watermark, high_water)

        for name, statement in STEPS:
            cursor.execute(load_sql(statement), params)
            report["rows"][name] = max(cursor.rowcount, 0)

        cursor.execute(load_sql("warehouse/queries/build/fact_input_violations.sql"), {"limit": MAX_REPORTED_ROWS})
        violations = [(int(row_id), problem) for row_id, problem in cursor.fetchall()]
        if violations:
            raise BuildInputError(violations)

        for name, statement in LOAD_STEPS:
            if full_rebuild and name == FACT_LOAD_STEP:
                statement = FULL_REBUILD_FACT_LOAD
            cursor.execute(load_sql(statement), params)
            report["rows"][name] = max(cursor.rowcount, 0)
            if full_rebuild and name == FACT_LOAD_STEP:
                if through_functions:
                    _recreate_indexes_through_function(cursor)
                else:
                    _recreate_indexes(cursor, dropped_indexes)

        if quality_checks:
            found = collect_violations(cursor, limit=MAX_REPORTED_ROWS)
            if found:
                raise QualityCheckError(found)

        cursor.execute(load_sql("warehouse/queries/build/fact_window_summary.sql"))
        staged, first_day, last_day, max_id = cursor.fetchone()
        report["fact_window"] = (
            None if not staged else
            {"first_day": first_day.isoformat(), "last_day": last_day.isoformat(),
             "max_balance_transaction_id": int(max_id)}
        )

        cursor.execute(load_sql("warehouse/queries/build/source_window_commit_time.sql"), params)
        commit_at = dict(zip(("reference", "oltp"), cursor.fetchone(), strict=True))
        for source in SOURCES:
            cursor.execute(
                load_sql("warehouse/queries/build/build_state_upsert.sql"),
                {"source": source, "commit_lsn": high_water[source][0], "index_in_txn": high_water[source][1]},
            )
        for table_name, source in TABLE_SOURCE.items():
            cursor.execute(
                load_sql("warehouse/queries/build/freshness_upsert.sql"),
                {"table_name": table_name, "source_lsn": high_water[source][0],
                 "source_commit_at": commit_at[source]},
            )
    return report


def triggering_events(events_by_asset: Any) -> list[dict[str, Any]]:
    """The capture facts of the Asset events that triggered a run (Airflow's
    ``triggering_asset_events``: asset -> events); each event's metadata plus its Asset URI."""
    found = []
    for asset, events in dict(events_by_asset).items():
        uri = getattr(asset, "uri", asset)
        for event in events or ():
            extra = dict(getattr(event, "extra", None) or {})
            found.append({"asset": str(uri), **{key: extra.get(key) for key in
                                                ("source", "changes", "start_lsn", "end_lsn", "tables")}})
    return found


def summarise_build(report: dict[str, Any], events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What a DAG run keeps of a build report (its XCom), with positions as LSN text, the events
    that triggered it, and ``text``: the report as one log line."""
    from paydata.cdc.pgoutput import format_lsn

    sources = {
        source: {"from": format_lsn(window["from"][0]), "to": format_lsn(window["to"][0])}
        for source, window in report["sources"].items()
    }
    events = events or []
    rows = report.get("rows", {})
    if report.get("up_to_date"):
        what = "marts already up to date"
    else:
        what = (f"{rows.get('facts_written', 0)} ledger facts, {rows.get('charges_written', 0)} charges written; "
                f"window {report.get('fact_window')}")
    positions = ", ".join(f"{source} {w['from']}..{w['to']}" for source, w in sources.items())
    trigger = "; ".join(f"{e.get('source')} {e.get('changes')} changes {e.get('start_lsn')}..{e.get('end_lsn')}"
                        for e in events) or "no asset event (manual or daily run)"
    return {
        "up_to_date": report.get("up_to_date"),
        "sources": sources,
        "rows": rows,
        "fact_window": report.get("fact_window"),
        "triggered_by": events,
        "duration_s": report.get("duration_s"),
        "text": f"warehouse build: {what}; {positions}; {report.get('duration_s')} s; triggered by {trigger}",
    }
