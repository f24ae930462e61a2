"""Marts DDL, pre-aggregation refresh and the freshness table."""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from paydata.sql import load_sql

AGGREGATES = ("agg_daily_merchant_volume", "agg_authorisation_rate", "agg_refund_dispute_rate")
MARTS_SCHEMA = "marts"


def ensure_marts(conn) -> None:
    """Create the ``marts`` and ``analytics`` schemas, tables, materialized views and views if missing.

    Idempotent and committed. On a migrated warehouse the marts tables with a ``merchant_id`` get
    their row-level security policies (warehouse migration V001, docs/security.md). An ``agg_authorisation_rate`` of an earlier release (computed from
    staged charges) is replaced by the one on ``marts.fct_charge``, unpopulated until the next
    :func:`refresh_aggregates`.
    """
    with conn.cursor() as cursor:
        cursor.execute(load_sql("warehouse/schema/marts.sql"))
        cursor.execute(load_sql("warehouse/schema/aggregates.sql"))
        cursor.execute(load_sql("warehouse/schema/analytics.sql"))
        cursor.execute(load_sql("warehouse/schema/row_security.sql"))
    conn.commit()


def refresh_aggregates(conn) -> dict[str, str]:
    """Refresh every pre-aggregation, ``CONCURRENTLY`` once it has been populated (readers never block).

    The first refresh of a never-populated view cannot be concurrent and is a plain refresh.
    Returns ``{view: "concurrent" | "initial"}``; committed.
    """
    done: dict[str, str] = {}
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            for name in AGGREGATES:
                cursor.execute(
                    load_sql("warehouse/schema/matview_is_populated.sql"), {"schema": MARTS_SCHEMA, "name": name}
                )
                found = cursor.fetchone()
                if found is None:
                    raise LookupError(f"materialized view {MARTS_SCHEMA}.{name} is missing: run ensure_marts")
                statement = "refresh_matview_concurrently.sql" if found[0] else "refresh_matview.sql"
                cursor.execute(
                    sql.SQL(load_sql(f"warehouse/schema/{statement}")).format(
                        view=sql.Identifier(MARTS_SCHEMA, name)
                    )
                )
                done[name] = "concurrent" if found[0] else "initial"
    finally:
        conn.autocommit = False
    return done


def freshness(conn) -> list[dict[str, Any]]:
    """Rows of ``marts.freshness``: per table the source LSN and commit time it is complete up to,
    when it was loaded and the lag (now - source commit time)."""
    with conn.cursor() as cursor:
        cursor.execute(load_sql("warehouse/build/freshness_select.sql"))
        columns = [c.name for c in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    conn.rollback()
    return rows
