"""Warehouse staging sink: applies captured changes to ``staging.<source>_<table>`` mirror tables.

Layout (database ``warehouse``, schema ``staging``, created by :meth:`WarehouseSink.prepare`):

* a mirror per captured table with the captured columns plus ``_commit_lsn``, ``_index_in_txn``,
  ``_commit_time``, ``_is_deleted`` and ``_loaded_at``; primary key = the table key. Deletes leave a
  tombstone (last values kept, ``_is_deleted = true``); a TRUNCATE tombstones every live row.
* for ``history=True`` specs an append-only ``<mirror>_history`` with the same columns plus ``_op``
  (``I``/``U``/``D``/``T``/``S``), primary key (key..., ``_commit_lsn``, ``_index_in_txn``).
* ``staging.cdc_offsets(source, commit_lsn, index_in_txn, updated_at)``: the highest applied position.

How a batch is applied (one database transaction per :meth:`WarehouseSink.apply` call):

1. Every change is validated (nothing touches the database before that). The source's offsets row
   is locked (``SELECT ... FOR UPDATE``); changes at or below it are dropped.
2. Per table (split at TRUNCATEs) the changes become the rows to stage: columns a change does not
   carry (unchanged TOAST, or every non-key column of a delete) are taken from earlier changes of
   the same key in the batch. A table with history stages every change; a mirror-only table stages
   just the last version of each key, the only one its mirror keeps.
3. The rows are encoded to COPY text and loaded in chunks; a worker thread loads one chunk while
   this thread encodes the next. Per chunk: COPY into a temporary table, fill whatever is still
   missing from the row stored before the batch (one set-based UPDATE of the temporary table),
   append every version to the history table (``ON CONFLICT DO NOTHING`` on key + position), and
   upsert the last version per key into the mirror (``INSERT ... ON CONFLICT DO UPDATE`` that only
   replaces a stored row with a lower position).
4. The offsets row is set to the highest position of the batch and the transaction commits
   (``synchronous_commit`` as configured: the offset must be as durable as the data).

A crash at any point before the commit leaves data and offsets as they were, and replaying the same
or an overlapping batch afterwards applies each change exactly once.

Bad input raises :class:`WarehouseSinkError` and applies nothing: a change for a table without a
warehouse spec, a missing or extra key or column, or an unsupported column type is refused before
the database is touched; a value that cannot be encoded is found while the batch is staged and the
transaction is rolled back. Database errors propagate as psycopg2 exceptions after a rollback.
"""

from __future__ import annotations

import io
import operator
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any

import psycopg2.errors
from psycopg2 import sql

from paydata.cdc import failpoints
from paydata.cdc.collector import collector_paused
from paydata.cdc.model import (
    STAGING_SCHEMA,
    CapturedChange,
    CapturedRow,
    Position,
    TableSpec,
)
from paydata.cdc.sinks.warehouse.copytext import (
    WarehouseSinkError,
)
from paydata.cdc.sinks.warehouse.plan import (
    _ROW_KINDS,
    KINDS,
    META_COLUMNS,
    SQL_FOLDER,
    _identifier_list,
    _position_of,
    _statement,
    _TablePlan,
)
from paydata.cdc.sinks.warehouse.versions import (
    FILL_BY_KEY,
    FILL_BY_OLD_KEY,
    _encode_row_versions,
    _encode_versions,
    _row_versions,
    _segments,
    _versions,
)
from paydata.sql import load_sql

# Applies the staging definitions of every captured source as the warehouse owner (migrate step).
DEFINE_COMMAND = "python -m paydata.migrations apply --db warehouse"
ROWS_PER_CHUNK = 10_000  # rows per COPY + upsert; the next chunk is encoded while one loads
COPY_CHUNK_CHARS = 1 << 20  # psycopg2 reads the COPY text in pieces of this size (default 8 KiB)


class WarehouseSink:
    """Applies captured changes to the warehouse staging layer, exactly once per position.

    ``conn_factory`` returns a new psycopg2 connection to the warehouse database (autocommit off);
    the sink keeps one connection, opens another after a connection error, and never shares it.
    Call :meth:`prepare` with the table specs before :meth:`apply`. Not thread-safe (``apply`` hands
    its connection to one short-lived worker thread of its own while it encodes); several sinks
    (processes) may apply for the same source concurrently: the offsets row lock serialises them.
    """

    name = "warehouse"

    def __init__(self, conn_factory: Callable[[], Any]):
        self._conn_factory = conn_factory
        self._conn: Any = None
        self._plans: dict[tuple[str, str], _TablePlan] = {}
        self._schema = sql.Identifier(STAGING_SCHEMA)
        self._rows_per_chunk = ROWS_PER_CHUNK

    # -- connection ---------------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            conn = self._conn_factory()
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(load_sql(f"{SQL_FOLDER}/session_settings.sql"))
            conn.autocommit = False
            self._conn = conn
        return self._conn

    def _abandon(self) -> None:
        """Roll back the open transaction; drop the connection if it is unusable."""
        conn, self._conn = self._conn, None
        if conn is None or conn.closed:
            return
        try:
            conn.rollback()
        except Exception:  # the connection is broken: closing it is all that is left to do
            conn.close()
            return
        self._conn = conn

    def close(self) -> None:
        """Close the sink's connection (a later call opens a new one)."""
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    # -- DDL ----------------------------------------------------------------------------------------

    def prepare(self, specs: list[TableSpec]) -> None:
        """Create schema ``staging``, ``cdc_offsets`` and the mirror/history tables of ``specs``.

        Specs whose ``sinks`` do not name ``warehouse`` are ignored. Idempotent: existing tables are
        kept and only columns new in a spec are added (``ADD COLUMN``, NULL for existing rows). Raises
        :class:`WarehouseSinkError` (nothing created) for an invalid spec, an unsupported type, or an
        existing table whose key or column base type differs from the spec.
        """
        plans = [_TablePlan.build(spec) for spec in specs if self.name in spec.sinks]
        seen: set[tuple[str, str]] = set()
        for plan in plans:
            if (plan.spec.source, plan.spec.table) in seen:
                raise WarehouseSinkError(f"two specs for {plan.label}")
            seen.add((plan.spec.source, plan.spec.table))
        conn = self._connection()
        try:
            with conn.cursor() as cursor:
                cursor.execute(load_sql(f"{SQL_FOLDER}/prepare_lock.sql"))
                # DDL only for what is missing: the loader, which may not run DDL, prepares a
                # staging layer the migrate step defined with reads only.
                cursor.execute(load_sql(f"{SQL_FOLDER}/offsets_table_exists.sql"), {"schema": STAGING_SCHEMA})
                if not cursor.fetchone()[0]:
                    cursor.execute(_statement("create_schema", schema=self._schema))
                    cursor.execute(_statement("create_offsets", schema=self._schema))
                # An apply locks its source's offsets row first, then the staging tables; DDL here
                # (CREATE INDEX IF NOT EXISTS locks the table even when the index exists) takes the
                # same row first, so a run preparing while another applies waits instead of deadlocking.
                for source in sorted({plan.spec.source for plan in plans}):
                    cursor.execute(_statement("ensure_offset", schema=self._schema), {"source": source})
                    cursor.execute(_statement("lock_offset", schema=self._schema), {"source": source})
                for plan in plans:
                    self._prepare_table(cursor, plan, plan.mirror, "create_mirror")
                    if plan.history is not None:
                        self._prepare_table(cursor, plan, plan.history, "create_history")
            conn.commit()
        except psycopg2.errors.InsufficientPrivilege as exc:
            self._abandon()
            raise WarehouseSinkError(
                f"the staging definitions of {sorted({plan.label for plan in plans})} are not in place and this "
                f"role may not create them ({exc.pgerror.strip() if exc.pgerror else exc}): run `{DEFINE_COMMAND}` "
                "as the warehouse owner"
            ) from exc
        except BaseException:
            self._abandon()
            raise
        for plan in plans:
            self._plans[(plan.spec.source, plan.spec.table)] = plan

    def _prepare_table(self, cursor: Any, plan: _TablePlan, table: str, create_statement: str) -> None:
        cursor.execute(load_sql(f"{SQL_FOLDER}/table_columns.sql"), {"schema": STAGING_SCHEMA, "table": table})
        existing = {name: (base_type, in_key) for name, base_type, in_key in cursor.fetchall()}
        table_id = sql.Identifier(table)
        if not existing:
            cursor.execute(
                _statement(
                    create_statement,
                    schema=self._schema,
                    table=table_id,
                    columns=plan.column_definitions(),
                    key=_identifier_list(plan.key),
                )
            )
        index = f"{table}_position_idx"[:63]
        cursor.execute(load_sql(f"{SQL_FOLDER}/index_exists.sql"), {"schema": STAGING_SCHEMA, "index": index})
        if not cursor.fetchone()[0]:
            cursor.execute(
                _statement(
                    "create_position_index",
                    schema=self._schema,
                    table=table_id,
                    index=sql.Identifier(index),
                )
            )
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
                _statement(
                    "add_column",
                    schema=self._schema,
                    table=table_id,
                    column=sql.Identifier(column),
                    type=sql.SQL(plan.types[column]),
                )
            )

    # -- offsets ------------------------------------------------------------------------------------

    def applied_position(self, source: str) -> Position:
        """Highest position applied for ``source``; ``Position.zero()`` if none (or not prepared yet)."""
        conn = self._connection()
        try:
            with conn.cursor() as cursor:
                cursor.execute(load_sql(f"{SQL_FOLDER}/offsets_table_exists.sql"), {"schema": STAGING_SCHEMA})
                if not cursor.fetchone()[0]:
                    conn.commit()
                    return Position.zero()
                cursor.execute(_statement("select_offset", schema=self._schema), {"source": source})
                found = cursor.fetchone()
            conn.commit()
        except BaseException:
            self._abandon()
            raise
        return Position(found[0], found[1]) if found else Position.zero()

    def _store_offset(self, cursor: Any, source: str, position: Position) -> None:
        cursor.execute(
            _statement("update_offset", schema=self._schema),
            {"source": source, "commit_lsn": position.commit_lsn, "index_in_txn": position.index_in_txn},
        )

    # -- apply --------------------------------------------------------------------------------------

    def _plan_for(self, source: str, table: str) -> _TablePlan:
        plan = self._plans.get((source, table))
        if plan is None:
            raise WarehouseSinkError(
                f"no warehouse spec for {source}.{table}: the table is not captured for the "
                "warehouse, or prepare() was not called with its spec"
            )
        return plan

    def _ordered_and_validated(self, source: str, changes: list[CapturedChange]) -> list[CapturedChange]:
        plans_by_table: dict[str, _TablePlan] = {}
        for change in changes:
            if not isinstance(change, CapturedChange):
                raise WarehouseSinkError(f"expected CapturedChange, got {type(change).__name__}")
            if change.source != source:
                raise WarehouseSinkError(
                    f"change for source {change.source!r} at {change.position} in a batch for {source!r}"
                )
            if change.kind not in KINDS:
                raise WarehouseSinkError(f"unknown change kind {change.kind!r} at {change.position}")
            if not isinstance(change.position, Position):
                raise WarehouseSinkError(f"change position must be a Position, got {change.position!r}")
            plan = plans_by_table.get(change.table)
            if plan is None:
                plan = plans_by_table[change.table] = self._plan_for(source, change.table)
            plan.validate(change)
        positions = [(position.commit_lsn, position.index_in_txn) for position in map(_position_of, changes)]
        if not all(map(operator.lt, positions, islice(positions, 1, None))):
            order = sorted(range(len(changes)), key=positions.__getitem__)
            changes_by_index = changes
            changes = [changes[i] for i in order]
            for previous, following in zip(order, order[1:], strict=False):
                first, second = changes_by_index[previous], changes_by_index[following]
                if positions[previous] == positions[following] and not (
                    first.kind == second.kind == "snapshot"
                    # an update that moves its key: a delete of the old key, then the update, at one position
                    or (first.kind == "delete" and second.kind == "update" and first.key != second.key)
                ):
                    raise WarehouseSinkError(f"two changes at position {Position(*positions[previous])} in one batch")
        return changes

    def apply(self, source: str, changes: list[CapturedChange]) -> Position:
        """Apply ``changes`` for ``source`` in one transaction with the new offset; return the offset.

        Changes may come in any order (they are applied by position); those at or below the stored
        offset are skipped, so replaying a batch, or an overlapping one, changes nothing twice.
        Exception: snapshot rows all share ``(consistent_point, -1)``, so snapshot rows *at* the stored
        offset are applied again (a snapshot may span several batches); the per-row position guard
        and the history key make a repeated snapshot row a no-op.
        Raises :class:`WarehouseSinkError` for bad input before touching the database; on any error
        the transaction is rolled back and neither data nor offset change.
        """
        with collector_paused():
            return self._apply(source, changes)

    def apply_rows(self, source: str, rows: list[CapturedRow]) -> Position:
        """:meth:`apply` for :class:`CapturedRow` batches: values go to COPY as the source's output text.

        The engine's streaming path. Same guarantees as :meth:`apply` (one transaction with the
        offset, changes at or below it skipped, the same staging rows), without parsing a value in
        Python: the warehouse column has the source column's type, so the source's output text is
        valid COPY input and the server parses it. Rows must be in position order, none repeated.
        Raises :class:`WarehouseSinkError` for bad input before touching the database.
        """
        with collector_paused():
            return self._apply_rows(source, rows)

    def replay(self, source: str, change: CapturedChange) -> bool:
        """Apply one change that lies below the stored offset (a dead letter re-read from the source).

        Under the source's offset lock, which stays where it is. Returns False, applying nothing, when
        the mirror already holds a version of the key at a later position: the history must not get
        an old position with newer values. Raises :class:`WarehouseSinkError` for bad input.
        """
        (change,) = self._ordered_and_validated(source, [change])
        plan = self._plans[(source, change.table)]
        conn = self._connection()
        try:
            with collector_paused(), conn.cursor() as cursor:
                cursor.execute(_statement("ensure_offset", schema=self._schema), {"source": source})
                cursor.execute(_statement("lock_offset", schema=self._schema), {"source": source})
                key_match = sql.SQL(" AND ").join(
                    _statement("key_column_equals", column=sql.Identifier(column)) for column in plan.key
                )
                cursor.execute(
                    _statement("select_row_position", schema=self._schema, table=sql.Identifier(plan.mirror),
                               key_match=key_match),
                    [change.key[column] for column in plan.key],
                )
                stored = cursor.fetchone()
                if stored is not None and Position(*stored) > change.position:
                    conn.commit()
                    return False
                self._apply_pending(cursor, source, [change])
            conn.commit()
        except BaseException:
            self._abandon()
            raise
        return True

    def _validated_rows(self, source: str, rows: list[CapturedRow]) -> list[CapturedRow]:
        """Raise :class:`WarehouseSinkError` unless every row fits a prepared spec, in position order.

        Checked per row (cheaply: a layout is compared with its spec once per batch): type, source,
        kind, table, order, a non-NULL key, and the number of values.
        """
        plans_by_layout: dict[int, tuple[_TablePlan, int]] = {}
        previous = (-1, -(2**63))
        for row in rows:
            if type(row) is not CapturedRow:
                raise WarehouseSinkError(f"expected CapturedRow, got {type(row).__name__}")
            position = (row.commit_lsn, row.index_in_txn)
            kind = row.kind
            # An update that moves a key yields a delete and an update at one position (different keys).
            if position < previous or (position == previous and kind != "update"):
                raise WarehouseSinkError(
                    f"rows must be in position order without repeats: {Position(*position)} after {Position(*previous)}"
                )
            previous = position
            if row.source != source:
                raise WarehouseSinkError(f"row for source {row.source!r} at {row.position} in a batch for {source!r}")
            if kind not in _ROW_KINDS:
                raise WarehouseSinkError(f"unknown change kind {kind!r} at {row.position}")
            layout = row.layout
            checked = plans_by_layout.get(id(layout))
            if checked is None:
                plan = self._plan_for(source, row.table)
                if layout.columns != plan.columns or layout.key != plan.key or layout.table != row.table:
                    raise WarehouseSinkError(
                        f"{plan.label}: rows carry columns {list(layout.columns)} keyed by {list(layout.key)}, "
                        f"the spec has {list(plan.columns)} keyed by {list(plan.key)}"
                    )
                checked = plans_by_layout[id(layout)] = (plan, len(plan.key))
            plan, key_width = checked
            if row.table != plan.spec.table:
                raise WarehouseSinkError(f"row for table {row.table!r} at {row.position} carries the layout of {plan.label}")
            if kind == "truncate":
                continue
            key = row.key
            if key is None or (key_width > 1 and (type(key) is not tuple or len(key) != key_width or None in key)):
                raise WarehouseSinkError(f"{plan.label} {kind} at {row.position} has key {key!r}; expected non-NULL "
                                         f"values for {list(plan.key)}")
            if kind != "delete" and (row.values is None or len(row.values) != len(plan.columns)):
                raise WarehouseSinkError(
                    f"{plan.label} {kind} at {row.position} carries "
                    f"{'no values' if row.values is None else f'{len(row.values)} values'} for {len(plan.columns)} columns"
                )
        return rows

    def _apply_rows(self, source: str, rows: list[CapturedRow]) -> Position:
        rows = self._validated_rows(source, list(rows))

        def after(stored: Position) -> list[CapturedRow]:
            if rows and (rows[0].commit_lsn, rows[0].index_in_txn) > (stored.commit_lsn, stored.index_in_txn):
                return rows  # in order, so every row is above the stored offset
            return [row for row in rows if row.position > stored]

        return self._in_offset_transaction(source, after, self._apply_pending_rows)

    def _apply_pending_rows(self, cursor: Any, source: str, pending: list[CapturedRow]) -> None:
        """:meth:`_apply_pending` for rows: same chunks, temporary tables and statements."""
        time_texts: dict[Any, str] = {}
        self._stage(
            cursor, source, pending, _row_versions,
            lambda plan, versions: _encode_row_versions(plan, versions, time_texts), "cdc_rows",
        )

    def _apply(self, source: str, changes: list[CapturedChange]) -> Position:
        changes = self._ordered_and_validated(source, list(changes))

        def after(stored: Position) -> list[CapturedChange]:
            if changes and changes[0].position > stored:
                return changes  # sorted, so every change is above the stored offset
            # Snapshot rows share one position, so a snapshot loaded in several batches repeats the
            # stored offset; they are re-applied and the per-row guard makes a repeat a no-op.
            return [
                change for change in changes
                if change.position > stored or (change.kind == "snapshot" and change.position == stored)
            ]

        return self._in_offset_transaction(source, after, self._apply_pending)

    def _in_offset_transaction(
        self, source: str, pending_after: Callable[[Position], list[Any]], stage: Callable[[Any, str, list[Any]], None]
    ) -> Position:
        """One transaction: lock the source's offset, stage what lies after it, move it; return it.

        ``pending_after(stored)`` picks the changes to apply; ``stage(cursor, source, pending)`` writes
        them. On any error the transaction is rolled back and neither data nor offset change.
        """
        conn = self._connection()
        try:
            with conn.cursor() as cursor:
                cursor.execute(_statement("ensure_offset", schema=self._schema), {"source": source})
                cursor.execute(_statement("lock_offset", schema=self._schema), {"source": source})
                stored = Position(*cursor.fetchone())
                pending = pending_after(stored)
                if not pending:
                    conn.commit()
                    return stored
                stage(cursor, source, pending)
                applied = pending[-1].position
                if applied != stored:
                    self._store_offset(cursor, source, applied)
                failpoints.reach("warehouse.in_transaction")
            conn.commit()
        except BaseException:
            self._abandon()
            raise
        return applied

    def _apply_pending(self, cursor: Any, source: str, pending: list[CapturedChange]) -> None:
        self._stage(cursor, source, pending, _versions, _encode_versions, "cdc_batch")

    def _stage(
        self,
        cursor: Any,
        source: str,
        pending: list[Any],
        versions_of: Callable[[_TablePlan, list[Any]], list[Any]],
        encode: Callable[[_TablePlan, list[Any]], tuple[str, int]],
        prefix: str,
    ) -> None:
        """Stage ``pending`` chunk by chunk, encoding the next chunk while the database loads this one.

        ``versions_of`` picks the rows to stage per table segment, ``encode`` turns a chunk of them
        into COPY text. Only the one worker thread uses the connection while a chunk is loading; this
        thread waits for it before issuing any statement itself, and leaving the ``with`` block (also
        on an error) waits for it too, so a rollback never races a running statement.
        """
        rows_per_chunk = self._rows_per_chunk
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="warehouse-sink-load") as loader:
            loading: Future[None] | None = None
            for number, (table, work) in enumerate(_segments(pending)):
                plan = self._plans[(source, table)]
                if not isinstance(work, list):  # a truncate
                    if loading is not None:
                        loading.result()
                        loading = None
                    self._apply_truncate(cursor, plan, work)
                    continue
                versions = versions_of(plan, work)
                for part, start in enumerate(range(0, len(versions), rows_per_chunk)):
                    text, needs_stored_values = encode(plan, versions[start : start + rows_per_chunk])
                    if loading is not None:
                        loading.result()
                    loading = loader.submit(
                        self._load_chunk, cursor, plan, text, needs_stored_values, f"{prefix}_{number}_{part}"
                    )
            if loading is not None:
                loading.result()

    def _apply_truncate(self, cursor: Any, plan: _TablePlan, change: CapturedChange) -> None:
        parts: dict[str, sql.Composable] = {"schema": self._schema, "table": sql.Identifier(plan.mirror)}
        name = "truncate_mirror"
        if plan.history is not None:
            name = "truncate_mirror_with_history"
            parts.update(history=sql.Identifier(plan.history), columns=_identifier_list(plan.columns))
        cursor.execute(
            _statement(name, **parts),
            {
                "commit_lsn": change.position.commit_lsn,
                "index_in_txn": change.position.index_in_txn,
                "commit_time": change.commit_time,
            },
        )

    def _encode_segment(self, plan: _TablePlan, changes: list[CapturedChange]) -> tuple[str, int]:
        """COPY text for ``changes`` and whether any row still lacks values (needs the stored row).

        Each row is the key's complete version as far as this batch knows it: columns a change does
        not carry are taken from the key's previous change in the batch, and the rest are listed in
        the row's ``_unchanged`` array. A table with history gets a row per change; a table without
        only gets the last version of each key (the only one its mirror keeps), so the rows' keys
        are unique. Encoding runs column by column so that each column's type is checked once for
        the whole batch.
        """
        return _encode_versions(plan, _versions(plan, changes))

    def _load_chunk(self, cursor: Any, plan: _TablePlan, text: str, needs_stored_values: int, batch: str) -> None:
        """COPY one encoded chunk into a temporary table, fill it, append history, upsert the mirror.

        Chunks of one segment are loaded in position order. A key's versions in a later chunk are
        newer, so the per-row guard lets them replace the earlier chunk's; columns still missing
        after merging within the batch are ones no change of the batch carried, which an earlier
        chunk only ever copied from the stored row, so filling from the mirror gives the same value.
        """
        batch_id = sql.Identifier(batch)
        table_id = sql.Identifier(plan.mirror)
        columns = _identifier_list(plan.columns)
        cursor.execute(_statement("create_batch", batch=batch_id, columns=plan.column_definitions()))
        cursor.copy_expert(
            _statement("copy_batch", batch=batch_id, columns=columns).as_string(cursor.connection),
            io.StringIO(text),
            COPY_CHUNK_CHARS,
        )
        if needs_stored_values and plan.non_key:
            cursor.execute(load_sql(f"{SQL_FOLDER}/fill_plan_settings.sql"))
            assignments = sql.SQL(",\n    ").join(
                _statement("fill_unchanged_column", column=sql.Identifier(column), column_name=sql.Literal(column))
                for column in plan.non_key
            )
            parts = {"batch": batch_id, "schema": self._schema, "table": table_id, "assignments": assignments}
            if needs_stored_values & FILL_BY_KEY:
                key_match = _statement(
                    "key_match", left=_identifier_list(plan.key, "b"), right=_identifier_list(plan.key, "m")
                )
                cursor.execute(_statement("fill_unchanged", key_match=key_match, **parts))
            if needs_stored_values & FILL_BY_OLD_KEY:
                old_key_match = sql.SQL("\n  AND ").join(
                    _statement("old_key_match_column", column=sql.Identifier(column),
                               index=sql.Literal(number), type=sql.SQL(plan.types[column]))
                    for number, column in enumerate(plan.key, start=1)
                )
                cursor.execute(_statement("fill_unchanged_from_old_key", old_key_match=old_key_match, **parts))
            cursor.execute(load_sql(f"{SQL_FOLDER}/reset_plan_settings.sql"))
        if plan.history is not None:
            cursor.execute(
                _statement(
                    "insert_history",
                    schema=self._schema,
                    history=sql.Identifier(plan.history),
                    columns=columns,
                    batch=batch_id,
                )
            )
        assignments = sql.SQL(",\n    ").join(
            _statement("upsert_mirror_column", column=sql.Identifier(column)) for column in plan.non_key
        )
        if not plan.non_key:
            assignments = _statement("upsert_mirror_column", column=sql.Identifier(plan.key[0]))
        cursor.execute(
            _statement(
                "upsert_mirror" if plan.history is not None else "upsert_mirror_unique",
                schema=self._schema,
                table=table_id,
                columns=columns,
                key=_identifier_list(plan.key),
                batch=batch_id,
                assignments=assignments,
            )
        )
