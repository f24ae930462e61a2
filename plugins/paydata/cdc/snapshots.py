"""Snapshots: the rows a new slot's exported snapshot shows, delivered to the sinks before streaming.

The slot is created on a replication connection with ``EXPORT_SNAPSHOT``. While that connection
stays open, each table is read with COPY inside a REPEATABLE READ transaction that imports the
snapshot: exactly the transactions committed before the slot's consistent point ``cp`` are
visible, and exactly those committed after it will be streamed. Snapshot rows are delivered as
``kind='snapshot'`` at ``Position(cp, SNAPSHOT_INDEX_BASE + k)`` for chunk ``k``, rising from chunk
to chunk and all below every streamed change of ``cp``; a snapshot begins with a ``truncate`` of
every snapshotted table. A table added to the manifest later is snapshotted through a temporary
slot after the main slot was streamed up to that slot's consistent point (docs/cdc.md, *Snapshots*).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from paydata.cdc import capture, failpoints
from paydata.cdc.deadletters import DeadLetter
from paydata.cdc.manifest import SourceCatalog
from paydata.cdc.model import CapturedChange, Position
from paydata.cdc.pgoutput import format_lsn
from paydata.cdc.streaming import CaptureError

log = logging.getLogger(__name__)

SNAPSHOT_INDEX_BASE = -(2**31)
"""Index of the first snapshot chunk; chunk ``k`` is at ``SNAPSHOT_INDEX_BASE + k`` (int4-safe)."""


class SnapshotSteps:
    """The snapshot half of :class:`paydata.cdc.engine.CdcEngine` (its attributes are the engine's)."""

    def _initial_snapshot(self, conn, catalog: SourceCatalog, *, slot_exists: bool) -> dict[str, Any]:
        manifest = self.manifest
        tables = list(manifest.tables)
        if slot_exists:
            log.warning(
                "source %s: slot %s exists but no completed snapshot is recorded for it (an earlier "
                "snapshot was interrupted); dropping it and snapshotting again", self.source, manifest.slot,
            )
            capture.drop_slot(conn, manifest.slot, wait_seconds=self.limits.slot_busy_wait_seconds)
        owner = self._owner_conn()
        # The publication must exist before the slot: decoding looks it up as of each change.
        capture.ensure_publication(owner, manifest.publication, tables, exact=True)
        capture.write_publication_state(owner, manifest.publication, None, [])
        exported = capture.create_slot_with_snapshot(self._replication_connect, manifest.slot, temporary=False)
        try:
            # The new slot starts at its consistent point; the ledger starts there with it (a crash
            # before the snapshot is recorded makes the next run drop the slot and start again).
            self.ledger.reset(self.source, manifest.slot, exported.consistent_point, datetime.now(UTC))
            rows = self._snapshot_tables(exported, catalog, tables)
        finally:
            exported.close()
        capture.write_publication_state(owner, manifest.publication, manifest.slot, tables)
        return {"tables": tables, "rows": rows, "consistent_point": format_lsn(exported.consistent_point)}

    def _add_tables(
        self, conn, catalog: SourceCatalog, added: list[str], recorded: frozenset[str], report: dict[str, Any]
    ) -> dict[str, Any]:
        manifest = self.manifest
        owner = self._owner_conn()
        capture.ensure_publication(owner, manifest.publication, list(manifest.tables), exact=False)
        helper_slot = f"{manifest.slot[:40]}_add_{uuid.uuid4().hex[:8]}"
        exported = capture.create_slot_with_snapshot(self._replication_connect, helper_slot, temporary=True)
        try:
            applied = {sink.name: sink.applied_position(self.source) for sink in self.sinks}
            self._stream(conn, applied, report, max_batches=None, upto_lsn=exported.consistent_point)
            rows = self._snapshot_tables(exported, catalog, added)
        finally:
            exported.close()
        capture.write_publication_state(owner, manifest.publication, manifest.slot, [*recorded, *added])
        return {"tables": added, "rows": rows, "consistent_point": format_lsn(exported.consistent_point)}

    def _snapshot_tables(self, exported: capture.ExportedSnapshot, catalog: SourceCatalog, tables: list[str]) -> dict:
        manifest = self.manifest
        commit_time = datetime.now(UTC)
        chunk = SNAPSHOT_INDEX_BASE

        def deliver(build: Callable[[Position], list[CapturedChange]]) -> None:
            nonlocal chunk
            changes = build(Position(exported.consistent_point, chunk))
            chunk += 1
            for sink in self.sinks:
                subset = [c for c in changes if sink.name in manifest.tables[c.table].sinks]
                if subset:
                    self._apply(sink, subset)
            failpoints.reach("cdc.snapshot_chunk")

        for table in tables:  # one position per truncate: sinks reject two non-snapshot changes at one position
            deliver(lambda position, table=table: [
                CapturedChange(self.source, table, "truncate", position, commit_time, {}, None)
            ])
        counts: dict[str, int] = {}
        self._snapshot_dead_letters = 0
        reader = self._connect()
        try:
            for table in tables:
                columns = capture.catalog_for(catalog, table, manifest.tables[table].captured_columns)

                progress = {"rows": 0, "logged": 0, "started": time.monotonic()}

                def on_rows(rows: list[dict[str, Any]], table: str = table, progress=progress) -> None:
                    with manifest.pinned_tokeniser():
                        deliver(lambda position: self._snapshot_changes(table, rows, position, commit_time))
                    progress["rows"] += len(rows)
                    if progress["rows"] - progress["logged"] >= self.limits.snapshot_progress_rows:
                        progress["logged"] = progress["rows"]
                        elapsed = time.monotonic() - progress["started"]
                        log.info("snapshot of %s.%s: %d rows so far (%.0f rows/s)", self.source, table,
                                 progress["rows"], progress["rows"] / max(elapsed, 1e-6))

                log.info("snapshot of %s.%s started", self.source, table)

                counts[table] = capture.copy_snapshot_table(
                    reader, exported.snapshot_name, table, columns, on_rows, chunk_rows=self.limits.snapshot_chunk_rows
                )
        finally:
            reader.close()
        log.info("snapshot of %s at %s: %s", self.source, format_lsn(exported.consistent_point), counts)
        if self._snapshot_dead_letters:
            log.warning("snapshot of %s: %d row(s) dead-lettered", self.source, self._snapshot_dead_letters)
        return counts

    def _snapshot_changes(
        self, table: str, rows: list[dict[str, Any]], position: Position, commit_time: datetime
    ) -> list[CapturedChange]:
        """Snapshot rows after the policy; a row it cannot be applied to becomes a dead letter (or stops)."""
        changes: list[CapturedChange] = []
        letters: list[DeadLetter] = []
        for row in rows:
            try:
                changes.append(self.manifest.capture_row(table, row, kind="snapshot", position=position,
                                                         commit_time=commit_time))
            except ValueError as exc:
                key, failures = self.manifest.diagnose_row(table, row)
                columns = tuple(column for column, _ in failures if column)
                reason = ", ".join(sorted({error for _, error in failures} | {type(exc).__name__}))
                letter = DeadLetter(self.source, table, position.commit_lsn, position.index_in_txn, "snapshot",
                                    key, columns, reason, commit_time)
                if self.manifest.tables[table].on_error == "stop":
                    raise CaptureError(
                        f"{self.source}.{table} snapshot row (key {letter.key_text}) cannot be captured: {reason} "
                        f"in column(s) {', '.join(columns) or '?'}; the manifest says on_error: stop"
                    ) from exc
                letters.append(letter)
        # Recorded before the chunk reaches a sink; the snapshot is redone whole if it is interrupted.
        self.dead_letters.record(letters)
        self._snapshot_dead_letters += len(letters)
        return changes
