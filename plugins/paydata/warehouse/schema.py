"""Marts DDL, pre-aggregation refresh and the freshness table."""

from __future__ import annotations

import hashlib
from typing import Any

from psycopg2 import sql

from paydata.sql import load_sql

AGGREGATES = ("agg_daily_merchant_volume", "agg_authorisation_rate", "agg_refund_dispute_rate")
MARTS_SCHEMA = "marts"
# The definitions ensure_marts applies, in order; their checksum is recorded on a migrated warehouse.
DEFINITION_FILES = (
    "warehouse/queries/schema/marts.sql",
    "warehouse/queries/schema/aggregates.sql",
    "warehouse/queries/schema/analytics.sql",
    "warehouse/queries/schema/row_security.sql",
)
DEFINITIONS_NAME = "marts"
MIGRATE_COMMAND = "python -m paydata.migrations apply --db warehouse"


class MartsNotDefined(RuntimeError):
    """The marts definitions this code expects are not applied, and the session may not apply them."""


def definitions_checksum() -> str:
    """SHA-256 over the marts definition files, as :func:`ensure_marts` applies them."""
    digest = hashlib.sha256()
    for name in DEFINITION_FILES:
        digest.update(name.encode() + b"\0" + load_sql(name).encode() + b"\0")
    return digest.hexdigest()


def ensure_marts(conn) -> None:
    """Create the ``marts`` and ``analytics`` schemas, tables, materialized views and views if missing.

    Idempotent and committed. On a migrated warehouse the marts tables with a ``merchant_id`` get
    their row-level security policies (warehouse migration V001, docs/security.md). An ``agg_authorisation_rate`` of an earlier release (computed from
    staged charges) is replaced by the one on ``marts.fct_charge``, unpopulated until the next
    :func:`refresh_aggregates`.
    """
    with conn.cursor() as cursor:
        for name in DEFINITION_FILES:
            cursor.execute(load_sql(name))
        cursor.execute(load_sql("warehouse/queries/schema/definitions_table_exists.sql"))
        if cursor.fetchone()[0]:
            cursor.execute(load_sql("warehouse/queries/schema/definitions_record.sql"),
                           {"name": DEFINITIONS_NAME, "checksum": definitions_checksum()})
    conn.commit()


def require_marts(conn) -> None:
    """Check, with reads only, that the migrate step applied this code's marts definitions.

    For a session that may not run DDL (the warehouse loader). Raises :class:`MartsNotDefined`
    naming the command to run as the owner when nothing or other definitions were applied.
    """
    with conn.cursor() as cursor:
        cursor.execute(load_sql("warehouse/queries/schema/definitions_table_exists.sql"))
        found = None
        if cursor.fetchone()[0]:
            cursor.execute(load_sql("warehouse/queries/schema/definitions_select.sql"), {"name": DEFINITIONS_NAME})
            found = cursor.fetchone()
    conn.rollback()
    if found is None:
        raise MartsNotDefined(f"the marts definitions were never applied to this warehouse: run `{MIGRATE_COMMAND}` "
                              "as the warehouse owner")
    if found[0] != definitions_checksum():
        raise MartsNotDefined(f"the warehouse has other marts definitions than this code ({found[0][:12]}, expected "
                              f"{definitions_checksum()[:12]}): run `{MIGRATE_COMMAND}` as the warehouse owner")


def may_define(conn) -> tuple[bool, bool]:
    """``(has_functions, may_define)``: whether the owner's runtime functions exist (migration V002)
    and whether this session may create objects itself (the owner or a superuser)."""
    with conn.cursor() as cursor:
        cursor.execute(load_sql("warehouse/queries/build/runtime_functions.sql"))
        has_functions, allowed = cursor.fetchone()
    conn.rollback()
    return bool(has_functions), bool(allowed)


def apply_or_require(conn, statement: str, tables: tuple[str, ...]) -> None:
    """Run the DDL file ``statement`` if this session may (the owner), else check with reads only
    that the migrate step created ``tables``; raises :class:`MartsNotDefined` naming it."""
    if may_define(conn)[1]:
        with conn.cursor() as cursor:
            cursor.execute(load_sql(statement))
        conn.commit()
        return
    missing = []
    with conn.cursor() as cursor:
        for table in tables:
            cursor.execute(load_sql("warehouse/queries/monitoring/table_exists.sql"), {"table": table})
            if not cursor.fetchone()[0]:
                missing.append(table)
    conn.rollback()
    if missing:
        raise MartsNotDefined(f"{', '.join(missing)} do not exist and this role may not create them: "
                              f"run `{MIGRATE_COMMAND}` as the warehouse owner")


def prepare_marts(conn) -> bool:
    """Apply the marts definitions if this session may (returns True), else check they are applied."""
    _, allowed = may_define(conn)
    if allowed:
        ensure_marts(conn)
    else:
        require_marts(conn)
    return allowed


def refresh_aggregates(conn) -> dict[str, str]:
    """Refresh every pre-aggregation, ``CONCURRENTLY`` once it has been populated (readers never block).

    The first refresh of a never-populated view cannot be concurrent and is a plain refresh. On a
    migrated warehouse the refresh runs through the owner's ``security.refresh_marts_view`` (the
    loader owns nothing). Returns ``{view: "concurrent" | "initial"}``; committed.
    """
    done: dict[str, str] = {}
    through_function, _ = may_define(conn)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            for name in AGGREGATES:
                cursor.execute(
                    load_sql("warehouse/queries/schema/matview_is_populated.sql"), {"schema": MARTS_SCHEMA, "name": name}
                )
                found = cursor.fetchone()
                if found is None:
                    raise LookupError(f"materialized view {MARTS_SCHEMA}.{name} is missing: run ensure_marts")
                if through_function:
                    cursor.execute(load_sql("warehouse/queries/schema/refresh_marts_view.sql"),
                                   {"name": name, "concurrent": bool(found[0])})
                else:
                    statement = "refresh_matview_concurrently.sql" if found[0] else "refresh_matview.sql"
                    cursor.execute(
                        sql.SQL(load_sql(f"warehouse/queries/schema/{statement}")).format(
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
        cursor.execute(load_sql("warehouse/queries/build/freshness_select.sql"))
        columns = [c.name for c in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    conn.rollback()
    return rows
