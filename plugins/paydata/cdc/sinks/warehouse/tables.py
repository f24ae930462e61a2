"""Creating and upgrading the staging tables that table plans describe.

The one place staging DDL runs: the sink's :meth:`~paydata.cdc.sinks.warehouse.WarehouseSink.prepare`
and the layout the tests build from the shipped manifests (:func:`create_layout`) both go through
:func:`create_bookkeeping` and :func:`create_tables`, so the two cannot differ.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg2 import sql

from paydata.cdc.model import STAGING_SCHEMA, TableSpec
from paydata.cdc.sinks.warehouse.copytext import WarehouseSinkError
from paydata.cdc.sinks.warehouse.plan import (
    META_COLUMNS,
    SQL_FOLDER,
    _identifier_list,
    _statement,
    _TablePlan,
)
from paydata.sql import load_sql

SINK_NAME = "warehouse"
SCHEMA = sql.Identifier(STAGING_SCHEMA)


def plans_for(specs: Iterable[TableSpec]) -> list[_TablePlan]:
    """The plans of the specs that name the warehouse sink; raise :class:`WarehouseSinkError` for a bad one."""
    plans = [_TablePlan.build(spec) for spec in specs if SINK_NAME in spec.sinks]
    seen: set[tuple[str, str]] = set()
    for plan in plans:
        if (plan.spec.source, plan.spec.table) in seen:
            raise WarehouseSinkError(f"two specs for {plan.label}")
        seen.add((plan.spec.source, plan.spec.table))
    return plans


def create_bookkeeping(cursor: Any) -> None:
    """Schema ``staging`` and its ``cdc_offsets`` table, if absent (checked first, so a role without
    DDL rights passes when the migrate step created them)."""
    cursor.execute(load_sql(f"{SQL_FOLDER}/offsets_table_exists.sql"), {"schema": STAGING_SCHEMA})
    if not cursor.fetchone()[0]:
        cursor.execute(_statement("create_schema", schema=SCHEMA))
        cursor.execute(_statement("create_offsets", schema=SCHEMA))


def lock_offsets(cursor: Any, sources: Iterable[str]) -> None:
    """Create (if absent) and lock the offsets row of each source, in name order."""
    for source in sorted(set(sources)):
        cursor.execute(_statement("ensure_offset", schema=SCHEMA), {"source": source})
        cursor.execute(_statement("lock_offset", schema=SCHEMA), {"source": source})


def create_tables(cursor: Any, plans: Iterable[_TablePlan]) -> None:
    """Create the mirror (and history) table of each plan, or add the columns new in its spec.

    Raises :class:`WarehouseSinkError` for an existing table whose key or column base type differs.
    """
    for plan in plans:
        _create_table(cursor, plan, plan.mirror, "create_mirror")
        if plan.history is not None:
            _create_table(cursor, plan, plan.history, "create_history")


def create_layout(cursor: Any, specs: Iterable[TableSpec]) -> None:
    """The staging layout of ``specs`` without offsets rows: what a fresh sink creates before its first batch."""
    plans = plans_for(specs)
    create_bookkeeping(cursor)
    create_tables(cursor, plans)


def _create_table(cursor: Any, plan: _TablePlan, table: str, create_statement: str) -> None:
    cursor.execute(load_sql(f"{SQL_FOLDER}/table_columns.sql"), {"schema": STAGING_SCHEMA, "table": table})
    existing = {name: (base_type, in_key) for name, base_type, in_key in cursor.fetchall()}
    table_id = sql.Identifier(table)
    if not existing:
        cursor.execute(
            _statement(
                create_statement,
                schema=SCHEMA,
                table=table_id,
                columns=plan.column_definitions(),
                key=_identifier_list(plan.key),
            )
        )
    index = f"{table}_position_idx"[:63]
    cursor.execute(load_sql(f"{SQL_FOLDER}/index_exists.sql"), {"schema": STAGING_SCHEMA, "index": index})
    if not cursor.fetchone()[0]:
        cursor.execute(_statement("create_position_index", schema=SCHEMA, table=table_id, index=sql.Identifier(index)))
    if not existing:
        return
    existing_key = {name for name, (_, in_key) in existing.items() if in_key} - META_COLUMNS
    if existing_key != set(plan.key):
        raise WarehouseSinkError(
            f"staging.{table} has key {sorted(existing_key)} but the spec for {plan.label} says "
            f"{list(plan.key)}; changing a key needs a manual migration"
        )
    for column in plan.columns:
        if column in existing:
            cursor.execute(load_sql(f"{SQL_FOLDER}/base_type.sql"), {"type": plan.types[column]})
            wanted = cursor.fetchone()[0]
            if wanted != existing[column][0]:
                raise WarehouseSinkError(
                    f"staging.{table}.{column} has type {existing[column][0]} but the spec for "
                    f"{plan.label} says {plan.types[column]}; changing a type needs a manual migration"
                )
            continue
        cursor.execute(
            _statement("add_column", schema=SCHEMA, table=table_id, column=sql.Identifier(column),
                       type=sql.SQL(plan.types[column]))
        )
