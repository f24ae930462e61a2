"""The warehouse staging sink: its connection and the one transaction per batch that moves its offset.

Applies captured changes to ``staging.<source>_<table>`` mirror tables.

Layout (database ``warehouse``, schema ``staging``, created by :meth:`WarehouseSink.prepare`):

* a mirror per captured table with the captured columns plus ``_commit_lsn``, ``_index_in_txn``,
  ``_commit_time``, ``_is_deleted`` and ``_loaded_at``; primary key = the table key. Deletes leave a
  tombstone (last values kept, ``_is_deleted = true``); a TRUNCATE tombstones every live row.
* for ``history=True`` specs an append-only ``<mirror>_history`` with the same columns plus ``_op``
  (``I``/``U``/``D``/``T``/``S``), primary key (key..., ``_commit_lsn``, ``_index_in_txn``).
* ``staging.cdc_offsets(source, commit_lsn, index_in_txn, updated_at)``: the highest applied position.

How a batch is applied (one database transaction per :meth:`WarehouseSink.apply` call):

1. Every change is validated (:mod:`.checks`; nothing touches the database before that). The source's offsets row
   is locked (``SELECT ... FOR UPDATE``); changes at or below it are dropped.
2. Per table (split at TRUNCATEs) the changes become the rows to stage: columns a change does not
   carry (unchanged TOAST, or every non-key column of a delete) are taken from earlier changes of
   the same key in the batch. A table with history stages every change; a mirror-only table stages
   just the last version of each key, the only one its mirror keeps.
3. The rows are encoded to COPY text (:mod:`.versions`) and loaded in chunks (:mod:`.loading`); a
   worker thread loads one chunk while this thread encodes the next. Per chunk: COPY into a temporary table, fill whatever is still
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

from collections.abc import Callable, Generator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2.errors
from psycopg2 import sql

from paydata.cdc import failpoints
from paydata.cdc.collector import collector_paused
from paydata.cdc.model import STAGING_SCHEMA, CapturedChange, CapturedRow, Position, TableSpec
from paydata.cdc.sinks.warehouse import tables
from paydata.cdc.sinks.warehouse.checks import (
    changes_after,
    ordered_and_validated,
    rows_after,
    validated_rows,
)
from paydata.cdc.sinks.warehouse.copytext import WarehouseSinkError
from paydata.cdc.sinks.warehouse.loading import load_steps
from paydata.cdc.sinks.warehouse.plan import SQL_FOLDER, _statement, _TablePlan
from paydata.cdc.sinks.warehouse.tables import SCHEMA
from paydata.cdc.sinks.warehouse.versions import encoded_chunks
from paydata.sql import load_sql

# Applies the staging definitions of every captured source as the warehouse owner (migrate step).
DEFINE_COMMAND = "python -m paydata.migrations apply --db warehouse"
ROWS_PER_CHUNK = 10_000  # rows per COPY + upsert; the next chunk is encoded while one loads


@dataclass
class _OffsetTransaction:
    """The open transaction of one batch: its cursor, the offset it found locked, the offset it leaves."""

    cursor: Any
    stored: Position
    position: Position


class WarehouseSink:
    """Applies captured changes to the warehouse staging layer, exactly once per position.

    ``conn_factory`` returns a new psycopg2 connection to the warehouse database (autocommit off);
    the sink keeps one connection, opens another after a connection error, and never shares it.
    Call :meth:`prepare` with the table specs before :meth:`apply`. Not thread-safe (``apply`` hands
    its connection to one short-lived worker thread of its own while it encodes); several sinks
    (processes) may apply for the same source concurrently: the offsets row lock serialises them.
    """

    name = tables.SINK_NAME

    def __init__(self, conn_factory: Callable[[], Any]):
        self._conn_factory = conn_factory
        self._conn: Any = None
        self._plans: dict[tuple[str, str], _TablePlan] = {}
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

    @contextmanager
    def _transaction(self) -> Generator[Any, None, None]:
        """A cursor in a transaction committed on leaving; on any error rolled back, then re-raised."""
        conn = self._connection()
        try:
            with conn.cursor() as cursor:
                yield cursor
            conn.commit()
        except BaseException:
            self._abandon()
            raise

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
        plans = tables.plans_for(specs)
        try:
            with self._transaction() as cursor:
                cursor.execute(load_sql(f"{SQL_FOLDER}/prepare_lock.sql"))
                # DDL only for what is missing: the loader, which may not run DDL, prepares a
                # staging layer the migrate step defined with reads only.
                tables.create_bookkeeping(cursor)
                # An apply locks its source's offsets row first, then the staging tables; DDL here
                # (CREATE INDEX IF NOT EXISTS locks the table even when the index exists) takes the
                # same row first, so a run preparing while another applies waits instead of deadlocking.
                tables.lock_offsets(cursor, (plan.spec.source for plan in plans))
                tables.create_tables(cursor, plans)
        except psycopg2.errors.InsufficientPrivilege as exc:
            raise WarehouseSinkError(
                f"the staging definitions of {sorted({plan.label for plan in plans})} are not in place and this "
                f"role may not create them ({exc.pgerror.strip() if exc.pgerror else exc}): run `{DEFINE_COMMAND}` "
                "as the warehouse owner"
            ) from exc
        for plan in plans:
            self._plans[(plan.spec.source, plan.spec.table)] = plan

    # -- offsets ------------------------------------------------------------------------------------

    def applied_position(self, source: str) -> Position:
        """Highest position applied for ``source``; ``Position.zero()`` if none (or not prepared yet)."""
        with self._transaction() as cursor:
            cursor.execute(load_sql(f"{SQL_FOLDER}/offsets_table_exists.sql"), {"schema": STAGING_SCHEMA})
            if not cursor.fetchone()[0]:
                return Position.zero()
            cursor.execute(_statement("select_offset", schema=SCHEMA), {"source": source})
            found = cursor.fetchone()
        return Position(found[0], found[1]) if found else Position.zero()

    @contextmanager
    def _offset_transaction(self, source: str) -> Generator[_OffsetTransaction, None, None]:
        """One transaction holding the source's offsets row locked; its offset moves with what is staged."""
        with self._transaction() as cursor:
            cursor.execute(_statement("ensure_offset", schema=SCHEMA), {"source": source})
            cursor.execute(_statement("lock_offset", schema=SCHEMA), {"source": source})
            stored = Position(*cursor.fetchone())
            yield _OffsetTransaction(cursor, stored, stored)

    def _stage(self, offset: _OffsetTransaction, source: str, pending: list[Any], *, text_rows: bool) -> None:
        """Stage ``pending`` (ordered, all above the stored offset) and move the offset to its last position."""
        if not pending:
            return
        load_steps(offset.cursor, encoded_chunks(self._plans, source, pending, self._rows_per_chunk,
                                                 text_rows=text_rows))
        offset.position = pending[-1].position
        if offset.position != offset.stored:
            self._store_offset(offset.cursor, source, offset.position)
        failpoints.reach("warehouse.in_transaction")

    def _store_offset(self, cursor: Any, source: str, position: Position) -> None:
        cursor.execute(
            _statement("update_offset", schema=SCHEMA),
            {"source": source, "commit_lsn": position.commit_lsn, "index_in_txn": position.index_in_txn},
        )

    # -- apply --------------------------------------------------------------------------------------

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
            changes = ordered_and_validated(self._plans, source, list(changes))
            with self._offset_transaction(source) as offset:
                self._stage(offset, source, changes_after(changes, offset.stored), text_rows=False)
            return offset.position

    def apply_rows(self, source: str, rows: list[CapturedRow]) -> Position:
        """:meth:`apply` for :class:`CapturedRow` batches: values go to COPY as the source's output text.

        The engine's streaming path. Same guarantees as :meth:`apply` (one transaction with the
        offset, changes at or below it skipped, the same staging rows), without parsing a value in
        Python: the warehouse column has the source column's type, so the source's output text is
        valid COPY input and the server parses it. Rows must be in position order, none repeated.
        Raises :class:`WarehouseSinkError` for bad input before touching the database.
        """
        with collector_paused():
            rows = validated_rows(self._plans, source, list(rows))
            with self._offset_transaction(source) as offset:
                self._stage(offset, source, rows_after(rows, offset.stored), text_rows=True)
            return offset.position

    def replay(self, source: str, change: CapturedChange) -> bool:
        """Apply one change that lies below the stored offset (a dead letter re-read from the source).

        Under the source's offset lock, which stays where it is. Returns False, applying nothing, when
        the mirror already holds a version of the key at a later position: the history must not get
        an old position with newer values. Raises :class:`WarehouseSinkError` for bad input.
        """
        (change,) = ordered_and_validated(self._plans, source, [change])
        plan = self._plans[(source, change.table)]
        with collector_paused(), self._transaction() as cursor:
            cursor.execute(_statement("ensure_offset", schema=SCHEMA), {"source": source})
            cursor.execute(_statement("lock_offset", schema=SCHEMA), {"source": source})
            key_match = sql.SQL(" AND ").join(
                _statement("key_column_equals", column=sql.Identifier(column)) for column in plan.key
            )
            cursor.execute(
                _statement("select_row_position", schema=SCHEMA, table=sql.Identifier(plan.mirror),
                           key_match=key_match),
                [change.key[column] for column in plan.key],
            )
            stored = cursor.fetchone()
            if stored is not None and Position(*stored) > change.position:
                return False
            load_steps(cursor, encoded_chunks(self._plans, source, [change], self._rows_per_chunk, text_rows=False))
        return True
