"""The CDC engine: snapshot, then stream a source's logical slot into the sinks, exactly once.

One run (:meth:`CdcEngine.run`):

1. Reads the source catalog and checks the manifest against it (missing column: error naming it;
   unlisted column: warning), builds the :class:`TableSpec` list and lets each sink ``prepare``.
2. Checks the slot (:mod:`paydata.cdc.health`): a lost slot fails with the re-snapshot command.
3. Takes a snapshot when needed (no slot yet, or an earlier snapshot never completed), or snapshots
   only the tables added to the manifest since.
4. Checks that the slot is the one the sinks were fed from (its position is not past the confirm
   ledger, :mod:`paydata.cdc.ledger`), then streams it over one replication connection
   (``START_REPLICATION``, :mod:`paydata.cdc.wire`): decodes, applies the manifest, gathers whole
   transactions into bounded batches, hands each sink the changes of its tables, and only after
   *every* sink returned, writes the end of the batch's last transaction to the ledger and then
   confirms it to the server (flush feedback), which moves the slot. Stops once the stream has
   passed the WAL position current at the start of the run (caught up), or after ``max_batches``.

Exactly-once
------------
Each change carries ``Position(commit_lsn, index_in_txn)``, totally ordered in commit order. A sink
stores its highest applied position in the same transaction as the data and skips anything not
greater (see :mod:`paydata.cdc.model`). The slot's position moves only when the engine confirms
one, and it confirms only (a) the end LSN of a transaction every sink applied in full, after they
all returned, or (b) at the end of a caught-up stream with nothing in flight and no transaction
open, the WAL position of the server's last keepalive. So after a crash anywhere the slot replays
from a point no later than what every sink stored, and each sink skips what it already has. The
slot can lag the sinks (a crash between apply and feedback) but never lead them; a slot that leads
the ledger was not moved by this engine and is refused. ``docs/cdc.md`` gives the argument with the
message types involved and the crash points the tests reach.

Snapshots
---------
The slot is created on a replication connection with ``EXPORT_SNAPSHOT``. While that connection
stays open, each table is read with COPY inside a REPEATABLE READ transaction that imports the
snapshot: exactly the transactions committed before the slot's consistent point ``cp`` are
visible, and exactly those committed after it will be streamed. Snapshot rows are delivered as
``kind='snapshot'`` at ``Position(cp, i)`` with negative ``i``: chunk ``k`` uses
``SNAPSHOT_INDEX_BASE + k``, so positions rise from chunk to chunk (a sink's offset guard would
otherwise skip every chunk after the first) and all sort before every streamed change of ``cp``.
A snapshot begins with a ``truncate`` of every snapshotted table at the first position: after a
lost slot, rows deleted while nothing was captured become tombstones instead of lingering.

The snapshot is recorded as complete (the publication's comment, see
:func:`paydata.cdc.capture.write_publication_state`) only after every sink applied all of it. A
run that finds a slot without that record drops it and snapshots again: the crash interrupted a
snapshot whose exported snapshot died with its connection.

A table added to the manifest later: ``ALTER PUBLICATION ... ADD TABLE`` commits first (decoding
uses the catalog as of each change, so only changes committed after it are published). Then a
*temporary* slot exports a snapshot with consistent point ``cp2``: transactions committed before
``cp2`` are visible in it, later ones are not. Before reading it, the main slot is streamed up to
``cp2`` (a replication session of its own, closed before the snapshot is read) so the sinks'
offsets cover every earlier commit (otherwise the snapshot's position, above those offsets, would
make the sinks skip them). Then the new table is snapshotted at ``(cp2, i<0)``.
Streamed changes of the new table committed before ``cp2`` are older than the snapshot rows (the
per-row guard keeps the snapshot's newer values, and the snapshot's truncate covers deletions);
changes committed at or after ``cp2`` come later in the stream with higher positions and win.
Choosing the snapshot position from ``pg_current_wal_insert_lsn()`` instead would be racy: a
commit record written before that LSN can still be invisible to a snapshot taken right after.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg2

from paydata.cdc import capture, failpoints
from paydata.cdc.collector import collector_paused
from paydata.cdc.deadletters import DeadLetter, DeadLetterStore
from paydata.cdc.health import (
    SlotLostError,
    assess_slot,
    check_slot_identity,
    heartbeat_content,
    heartbeat_time,
    resnapshot_command,
    warehouse_ledger,
)
from paydata.cdc.ledger import ConfirmLedger
from paydata.cdc.manifest import Manifest, SourceCatalog, load_manifest
from paydata.cdc.model import CapturedChange, CapturedRow, Position, Sink, TableSpec
from paydata.cdc.pgoutput import LogicalMessage, PgOutputDecoder, format_lsn, parse_lsn
from paydata.cdc.wire import ReplicationStream

log = logging.getLogger(__name__)

HEARTBEAT_PREFIX = "paydata.heartbeat"  # include/sql/cdc/heartbeat.sql
SNAPSHOT_INDEX_BASE = -(2**31)
"""Index of the first snapshot chunk; chunk ``k`` is at ``SNAPSHOT_INDEX_BASE + k`` (int4-safe)."""


class SinkContractError(RuntimeError):
    """A sink reported an applied position below the last change it was given."""


class CaptureError(RuntimeError):
    """A change of an ``on_error: stop`` table could not be captured; nothing of its batch was applied."""


@dataclass(frozen=True)
class EngineLimits:
    """Bounds of one run. Memory per batch is about ``batch_bytes`` plus one transaction."""

    # pgoutput messages per batch (the batch ends at the next transaction boundary). Larger batches
    # fold more versions of a key into one staged row and spread the per-batch round trips; two batches
    # are in memory at once (one applied while the next is read): about 150 MB at these settings.
    batch_changes: int = 20_000
    batch_bytes: int = 32 << 20  # likewise for payload bytes
    max_batches: int = 200  # per run; the next run continues
    snapshot_chunk_rows: int = 5000
    snapshot_progress_rows: int = 100_000  # a snapshot logs its progress every this many rows of a table
    slot_busy_wait_seconds: float = 30.0
    heartbeat: bool = True
    # The run ends once the server has sent nothing and read no further WAL for this long (normally
    # it ends earlier: when the stream passes the WAL position current at the start of the run).
    stream_idle_seconds: float = 2.0
    # While a slow sink applies a batch nothing is read; a status update this often keeps the server
    # from ending the session after wal_sender_timeout (60 s by default).
    keepalive_seconds: float = 10.0


@dataclass
class _Batch:
    pending: dict[str, list[CapturedRow]]
    boundary: int | None = None
    source_time: datetime | None = None  # commit time of the transaction (or heartbeat) at the boundary
    dead_letters: list[DeadLetter] = field(default_factory=list)
    rows: int = 0
    first_lsn: int | None = None  # commit LSN of the batch's first transaction (for the log line)
    started: float = field(default_factory=time.monotonic)
    payload_bytes: int = 0
    transactions: int = 0
    captured: int = 0
    reached_upto: bool = False
    caught_up: bool = False
    idle: bool = False


class CdcEngine:
    """Captures one source database into its sinks. See the module docstring for the guarantees.

    ``connect()`` opens a connection as the capture role (REPLICATION + SELECT);
    ``replication_connect()`` the same role as a ``LogicalReplicationConnection`` (slot creation
    with an exported snapshot, and streaming: one replication session per run, plus one while
    tables are added);
    ``owner_connect()`` the tables' owner (publications need ownership);
    ``stream_params()`` the capture role's psycopg2 connection keywords, for the streaming session
    (:mod:`paydata.cdc.wire`); ``ledger`` the confirm ledger (:mod:`paydata.cdc.ledger`) that every
    position is written to before the slot is told. Each run opens and closes its own connections.
    """

    def __init__(
        self,
        manifest: Manifest,
        sinks: Sequence[Sink],
        *,
        connect: Callable[[], Any],
        replication_connect: Callable[[], Any],
        owner_connect: Callable[[], Any],
        stream_params: Callable[[], Mapping[str, Any]],
        ledger: ConfirmLedger,
        dead_letters: DeadLetterStore,
        limits: EngineLimits | None = None,
    ) -> None:
        names = [sink.name for sink in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique, got {names}")
        missing = sorted(manifest.sink_names - set(names))
        if missing:
            raise ValueError(
                f"manifest {manifest.origin} routes tables to sink(s) {missing} but the engine was given {names}"
            )
        self.manifest = manifest
        self.sinks = [sink for sink in sinks if sink.name in manifest.sink_names]
        self._connect = connect
        self._replication_connect = replication_connect
        self._owner_connect = owner_connect
        self._stream_params = stream_params
        self.ledger = ledger
        self.dead_letters = dead_letters
        self.limits = limits or EngineLimits()
        self._owner: Any = None
        self._snapshot_dead_letters = 0

    @property
    def source(self) -> str:
        return self.manifest.source

    # -- public ----------------------------------------------------------------------------------------

    def run(self, max_batches: int | None = None) -> dict[str, Any]:
        """One capture run; returns a JSON-serialisable report (for XCom).

        Raises :class:`paydata.cdc.manifest.ManifestError` (manifest vs catalog),
        :class:`paydata.cdc.manifest.SchemaDriftError` (a batch lacks a mapped column: nothing of it
        applied or confirmed), :class:`paydata.cdc.health.SlotLostError` (re-snapshot needed; also
        when the slot is dropped or invalidated while being streamed),
        :class:`paydata.cdc.capture.SlotBusyError` (another consumer held the slot for longer than
        ``slot_busy_wait_seconds``).
        """
        conn = self._connect()
        try:
            return self._run(conn, self.limits.max_batches if max_batches is None else max_batches)
        finally:
            conn.close()
            self._close_owner()
            self.ledger.close()
            self.dead_letters.close()

    def resnapshot(self) -> dict[str, Any]:
        """Drop the slot and the recorded snapshot state, then run (which snapshots everything anew).

        The state is cleared before the slot is dropped: a crash in between leaves a slot without a
        record, which the next run treats as an interrupted snapshot.
        """
        conn = self._connect()
        try:
            state = capture.read_publication_state(conn, self.manifest.publication)
            if state.exists:
                capture.write_publication_state(self._owner_conn(), self.manifest.publication, None, [])
            dropped = capture.drop_slot(conn, self.manifest.slot, wait_seconds=self.limits.slot_busy_wait_seconds)
            log.warning("resnapshot of %s: slot %s %s", self.source, self.manifest.slot,
                        "dropped" if dropped else "did not exist")
        finally:
            conn.close()
            self._close_owner()
        return self.run()

    def replay(self) -> dict[str, Any]:
        """Re-apply the source's unresolved dead letters from the source rows as they are now
        (:mod:`paydata.cdc.replay`); returns how many were replayed, superseded or still fail."""
        from paydata.cdc.replay import replay_dead_letters

        try:
            return replay_dead_letters(self)
        finally:
            self._close_owner()

    def adopt_slot(self) -> dict[str, Any]:
        """Start the confirm ledger at the slot's current position, vouching for the slot by hand.

        For a deployment whose slot predates the ledger, or a ledger restored from a backup older
        than the slot: use it only when the slot is known to be the one the sinks were fed from.
        A slot recreated in the meantime would silently skip what was committed without it.
        """
        conn = self._connect()
        try:
            row = capture.slot_row(conn, self.manifest.slot)
            state = capture.read_publication_state(conn, self.manifest.publication)
            recorded = state.snapshot_complete and state.slot == self.manifest.slot
            assess_slot(self.source, self.manifest.slot, row, snapshot_recorded=recorded)
            if row is None or not recorded:
                raise SlotLostError(
                    f"source {self.source!r} has no slot with a completed snapshot to adopt; run it "
                    f"(or {resnapshot_command(self.source)}) instead"
                )
            lsn = parse_lsn(row["confirmed_flush_lsn"])
            self.ledger.reset(self.source, self.manifest.slot, lsn, None)
            log.warning("confirm ledger of %s adopted slot %s at %s", self.source, self.manifest.slot, format_lsn(lsn))
            return {"source": self.source, "slot": self.manifest.slot, "ledger_lsn": format_lsn(lsn)}
        finally:
            conn.close()
            self.ledger.close()

    # -- run ---------------------------------------------------------------------------------------------

    def _run(self, conn, max_batches: int) -> dict[str, Any]:
        started = time.monotonic()
        manifest = self.manifest
        self._snapshot_dead_letters = 0
        catalog = capture.read_catalog(conn, list(manifest.tables))
        warnings = manifest.check_catalog(catalog)
        specs = manifest.table_specs(catalog)
        self._prepare_sinks(specs)

        state = capture.read_publication_state(conn, manifest.publication)
        recorded = state.snapshot_complete and state.slot == manifest.slot
        slot_before = capture.slot_row(conn, manifest.slot)
        assess_slot(self.source, manifest.slot, slot_before, snapshot_recorded=recorded)

        report: dict[str, Any] = {
            "source": self.source,
            "slot": manifest.slot,
            "start_lsn": slot_before["confirmed_flush_lsn"] if slot_before else None,
            "snapshot": None,
            "warnings": warnings,
            "batches": 0,
            "transactions": 0,
            "changes_read": 0,
            "applied": {sink.name: 0 for sink in self.sinks},
            "tables": {sink.name: {} for sink in self.sinks},
            "dead_lettered": 0,
            "caught_up": False,
        }
        if slot_before is None or not recorded:
            report["snapshot"] = self._initial_snapshot(conn, catalog, slot_exists=slot_before is not None)
        else:
            added = [table for table in manifest.tables if table not in state.tables]
            if added:
                report["snapshot"] = self._add_tables(conn, catalog, added, state.tables, report)
        report["dead_lettered"] += self._snapshot_dead_letters
        if report["start_lsn"] is None:
            report["start_lsn"] = capture.slot_row(conn, manifest.slot)["confirmed_flush_lsn"]

        if self.limits.heartbeat:
            capture.emit_heartbeat(conn, heartbeat_content(self.source))
        applied = {sink.name: sink.applied_position(self.source) for sink in self.sinks}
        report["caught_up"] = self._stream(conn, applied, report, max_batches=max_batches)

        slot_after = capture.slot_row(conn, manifest.slot)
        report["end_lsn"] = slot_after["confirmed_flush_lsn"]
        report["lag_bytes"] = slot_after["lag_bytes"]
        report["retained_bytes"] = slot_after["retained_bytes"]
        report["wal_status"] = slot_after["wal_status"]
        report["dead_letters_unresolved"] = self.dead_letters.counts(self.source)[0]
        if report["dead_lettered"]:
            log.warning("source %s: %d change(s) could not be captured and were dead-lettered (%d unresolved); "
                        "see staging.cdc_dead_letters, fix the cause, then `python -m paydata.cdc replay --source %s`",
                        self.source, report["dead_lettered"], report["dead_letters_unresolved"], self.source)
        entry = self.ledger.entry(self.source)
        report["lag_seconds"] = None
        if entry is not None and entry.source_time is not None:
            report["lag_seconds"] = round(max(0.0, (datetime.now(UTC) - entry.source_time).total_seconds()), 3)
        report["seconds"] = round(time.monotonic() - started, 3)
        log.info("%s", run_summary(report))
        return report

    def _prepare_sinks(self, specs: list[TableSpec]) -> None:
        for sink in self.sinks:
            prepare = getattr(sink, "prepare", None)
            if prepare is not None:
                prepare([spec for spec in specs if sink.name in spec.sinks])

    def _owner_conn(self):
        if self._owner is None or self._owner.closed:
            self._owner = self._owner_connect()
        return self._owner

    def _close_owner(self) -> None:
        if self._owner is not None and not self._owner.closed:
            self._owner.close()
        self._owner = None

    # -- snapshots ------------------------------------------------------------------------------------

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

    # -- streaming -----------------------------------------------------------------------------------------

    def _apply_rows(self, sink: Sink, rows: list[CapturedRow]) -> Position:
        """Streamed rows to one sink: as text rows if it takes them (``apply_rows``), else parsed."""
        apply_rows = getattr(sink, "apply_rows", None)
        if apply_rows is None:
            return self._apply(sink, [row.typed() for row in rows])
        return self._checked(sink, apply_rows(self.source, rows), rows[-1].position)

    def _apply(self, sink: Sink, changes: list[CapturedChange]) -> Position:
        return self._checked(sink, sink.apply(self.source, changes), changes[-1].position)

    def _checked(self, sink: Sink, position: Position, last: Position) -> Position:
        if position < last:
            raise SinkContractError(
                f"sink {sink.name!r} reported {position} after applying up to {last} of "
                f"{self.source}; the slot was not advanced"
            )
        return position

    def _stream(
        self,
        conn,
        applied: dict[str, Position],
        report: dict[str, Any],
        *,
        max_batches: int | None,
        upto_lsn: int | None = None,
    ) -> bool:
        """Stream batches over one replication session; return True when caught up.

        Caught up: every transaction that committed before the WAL position current when the
        stream started (or before ``upto_lsn``) was applied by every sink and confirmed, or the
        server had nothing more to send for ``stream_idle_seconds``. False when ``max_batches``
        ended the run first. The session is closed, and its slot released, before returning.
        """
        manifest = self.manifest
        row = capture.slot_row(conn, manifest.slot)
        assess_slot(self.source, manifest.slot, row, snapshot_recorded=True)
        # Before anything of the stream is applied: a slot past the ledger starts past changes the
        # sinks never received (recreated under the same name, or moved by another consumer).
        check_slot_identity(self.source, manifest.slot, row, self.ledger.entry(self.source))
        confirmed = parse_lsn(row["confirmed_flush_lsn"])
        target = parse_lsn(row["current_wal_lsn"]) if upto_lsn is None else upto_lsn
        try:
            stream = capture.start_stream(self._stream_params, manifest.slot, manifest.publication, confirmed,
                                          wait_seconds=self.limits.slot_busy_wait_seconds)
        except psycopg2.Error as exc:
            self._raise_if_slot_lost(conn, exc)
            raise
        try:
            caught_up = self._stream_batches(conn, stream, applied, report, confirmed, target,
                                             max_batches=max_batches, upto_lsn=upto_lsn)
        finally:
            stream.close()
        capture.wait_for_slot_release(conn, manifest.slot, stream.backend_pid)
        return caught_up

    def _stream_batches(
        self,
        conn,
        stream: ReplicationStream,
        applied: dict[str, Position],
        report: dict[str, Any],
        confirmed: int,
        target: int,
        *,
        max_batches: int | None,
        upto_lsn: int | None,
    ) -> bool:
        decoder = PgOutputDecoder(parse_values=False)
        batches = 0
        in_flight: tuple[_Batch, Future[dict[str, Position]]] | None = None
        keepalive_seconds = self.limits.keepalive_seconds

        def report_position(lsn: int, source_time: datetime | None) -> None:
            """Ledger first, then the server: the slot is never told a position the ledger lacks."""
            nonlocal confirmed
            self.ledger.advance(self.source, self.manifest.slot, lsn, source_time)
            failpoints.reach("cdc.ledger_written")
            stream.confirm(lsn)
            confirmed = lsn
            failpoints.reach("cdc.confirmed")

        def settle() -> None:
            """Wait for the batch being applied, record it, and confirm its end to the server."""
            nonlocal in_flight
            if in_flight is None:
                return
            batch, applying = in_flight
            # Nothing is read while a sink works: tell the server the session is alive (confirming
            # nothing new), or a batch slower than wal_sender_timeout loses the connection.
            while True:
                try:
                    positions = applying.result(timeout=keepalive_seconds)
                    break
                except FutureTimeout:
                    stream.keep_alive()
            in_flight = None
            for name, position in positions.items():
                applied[name] = position
                report["applied"][name] += len(batch.pending[name])
                counts = report.setdefault("tables", {}).setdefault(name, {})
                for row in batch.pending[name]:
                    counts[row.table] = counts.get(row.table, 0) + 1
            report["transactions"] += batch.transactions
            report["changes_read"] += batch.captured
            report["dead_lettered"] += len(batch.dead_letters)
            # Every sink has returned: each applied all changes of every transaction up to the boundary.
            if batch.boundary > confirmed:
                report_position(batch.boundary, batch.source_time)
            if batch.captured or batch.dead_letters:
                log.info("%s batch %d: %d changes, %d transactions, tables %s, %s..%s, %.2f s",
                         self.source, report["batches"], batch.captured, batch.transactions,
                         ",".join(sorted({row.table for rows in batch.pending.values() for row in rows})) or "-",
                         format_lsn(batch.first_lsn or batch.boundary), format_lsn(batch.boundary),
                         time.monotonic() - batch.started)

        def confirm_sent_position() -> None:
            """At the end of a caught-up or idle stream: confirm the server's sent WAL position.

            Safe only here: every message received has been applied and confirmed, and no
            transaction is open; the server reports in a keepalive how far it has read the WAL,
            and it has sent every transaction that committed below that point before it. Without
            this the slot would stay at the last captured commit and report as lag every byte the
            cluster wrote since (the sinks' own writes too, when they share the cluster).
            """
            if in_flight is None and not decoder.in_transaction and stream.server_lsn > confirmed:
                report_position(stream.server_lsn, None)

        # One batch is applied while the next is read and decoded: the sinks' database work overlaps
        # the decoding. Batches are still applied one after another, in order, and each is
        # confirmed only after every sink returned.
        with collector_paused(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdc-apply") as applier:
            try:
                while max_batches is None or batches < max_batches:
                    try:
                        # Schema drift raises here: nothing of the batch reached a sink, nothing is confirmed.
                        batch = self._read_batch(stream, decoder, applied, target, upto_lsn)
                    except psycopg2.Error as exc:
                        self._raise_if_slot_lost(conn, exc)
                        raise
                    if batch.boundary is not None:
                        batches += 1
                        report["batches"] += 1
                        failpoints.reach("cdc.batch_read")
                        settle()
                        in_flight = (batch, applier.submit(self._apply_batch, batch))
                    if batch.reached_upto:
                        settle()
                        return True
                    if batch.caught_up or batch.idle:
                        settle()
                        confirm_sent_position()
                        return batch.caught_up or not decoder.in_transaction
                settle()
                return False
            except BaseException:
                # The batch already handed to the sinks is complete: let it finish and confirm it if it
                # succeeded, so the failure costs no more than the batch that failed.
                if in_flight is not None:
                    with contextlib.suppress(Exception):
                        settle()
                raise

    def _apply_batch(self, batch: _Batch) -> dict[str, Position]:
        # Before any sink: a crash after this replays the batch, and the letters are keyed by position.
        self.dead_letters.record(batch.dead_letters)
        positions: dict[str, Position] = {}
        for sink in self.sinks:
            if batch.pending[sink.name]:
                positions[sink.name] = self._apply_rows(sink, batch.pending[sink.name])
                failpoints.reach(f"cdc.sink_committed.{sink.name}")
        return positions

    def _dead_letter(self, change: Any, commit_time: datetime, exc: Exception) -> DeadLetter:
        """The dead letter of a change ``capture_raw`` failed on, or CaptureError for an ``on_error: stop`` table."""
        table, key, failures = self.manifest.diagnose_raw(change)
        columns = tuple(column for column, _ in failures if column)
        reason = ", ".join(sorted({error for _, error in failures} | {type(exc).__name__}))
        letter = DeadLetter(self.source, table, change.lsn_commit, change.index_in_txn, change.kind, key,
                            columns, reason, commit_time)
        if self.manifest.tables[table].on_error == "stop":
            raise CaptureError(
                f"{self.source}.{table} change at {format_lsn(change.lsn_commit)}:{change.index_in_txn} "
                f"(key {letter.key_text}) cannot be captured: {reason} in column(s) {', '.join(columns) or '?'}. "
                "The table's manifest says on_error: stop, so nothing of this batch was applied and the slot "
                "was not advanced; fix the row in the source (or the policy) and rerun."
            ) from exc
        log.warning("dead-lettered %s.%s %s at %s:%d: %s in %s", self.source, table, change.kind,
                    format_lsn(change.lsn_commit), change.index_in_txn, reason, ", ".join(columns) or "?")
        return letter

    def _raise_if_slot_lost(self, conn, exc: Exception) -> None:
        """After a streaming error: SlotLostError (from ``exc``) if the slot is gone or invalidated."""
        try:
            row = capture.slot_row(conn, self.manifest.slot)
        except psycopg2.Error:
            return
        try:
            assess_slot(self.source, self.manifest.slot, row, snapshot_recorded=True)
        except SlotLostError as lost:
            raise lost from exc

    def _read_batch(
        self, stream: ReplicationStream, decoder: PgOutputDecoder, applied: dict[str, Position], target: int,
        upto_lsn: int | None,
    ) -> _Batch:
        batch = _Batch(pending={sink.name: [] for sink in self.sinks})
        with self.manifest.pinned_tokeniser():
            self._fill_batch(batch, stream, decoder, applied, target, upto_lsn)
        return batch

    def _fill_batch(
        self, batch: _Batch, stream: ReplicationStream, decoder: PgOutputDecoder, applied: dict[str, Position],
        target: int, upto_lsn: int | None,
    ) -> None:
        """Read whole transactions into ``batch`` until a limit, a gap in the stream, or the target.

        Messages are in WAL order of their commits (heartbeats at their own position), so seeing a
        commit or heartbeat at or past ``target`` means everything before it has been received;
        so does a keepalive past it while no transaction is open.
        """
        manifest = self.manifest
        limits = self.limits
        applied_at = {name: (position.commit_lsn, position.index_in_txn) for name, position in applied.items()}
        capture_raw = manifest.capture_raw
        sinks_of = {name: table.sinks for name, table in manifest.tables.items()}
        pending = batch.pending
        idle_since: float | None = None
        server_lsn = stream.server_lsn
        status_requested = 0.0
        while True:
            received = stream.read(timeout=0.05)
            if received is None:
                if not decoder.in_transaction:
                    if stream.server_lsn >= target:
                        batch.reached_upto = upto_lsn is not None
                        batch.caught_up = upto_lsn is None
                        return
                    if batch.boundary is not None:
                        return  # apply what is complete while the server decodes further
                now = time.monotonic()
                if idle_since is None or stream.server_lsn != server_lsn:
                    idle_since, server_lsn = now, stream.server_lsn
                elif now - idle_since >= limits.stream_idle_seconds:
                    batch.idle = True
                    return
                if now - status_requested >= 0.1:
                    stream.request_status()
                    status_requested = now
                continue
            idle_since = None
            lsn, payload = received
            batch.rows += 1
            batch.payload_bytes += len(payload)
            for item in decoder.feed(payload, lsn):
                if isinstance(item, LogicalMessage):
                    if upto_lsn is not None and item.lsn >= upto_lsn:
                        batch.reached_upto = True
                        return
                    if item.lsn > (batch.boundary or 0):
                        batch.boundary = item.lsn
                        if item.prefix == HEARTBEAT_PREFIX:
                            batch.source_time = heartbeat_time(item.content)
                    if item.lsn >= target:
                        batch.caught_up = True
                        return
                    continue
                if upto_lsn is not None and item.commit_lsn >= upto_lsn:
                    batch.reached_upto = True
                    return
                commit_lsn = item.commit_lsn
                captured_rows = 0
                for change in item.changes:
                    try:
                        captured_changes = capture_raw(change)
                    except ValueError as exc:  # a value the policy cannot be applied to (tokenise, parse)
                        batch.dead_letters.append(self._dead_letter(change, item.commit_time, exc))
                        continue
                    for captured in captured_changes:
                        captured_rows += 1
                        for sink_name in sinks_of[captured.table]:
                            # Only a transaction at a sink's stored commit LSN needs the per-change check.
                            if commit_lsn > applied_at[sink_name][0] or (
                                (commit_lsn, captured.index_in_txn) > applied_at[sink_name]
                            ):
                                pending[sink_name].append(captured)
                batch.captured += captured_rows
                if item.end_lsn > (batch.boundary or 0):
                    batch.boundary = item.end_lsn
                    batch.source_time = item.commit_time
                if batch.first_lsn is None:
                    batch.first_lsn = commit_lsn
                batch.transactions += 1
                if item.commit_lsn >= target:
                    batch.caught_up = True
                    return
                if batch.payload_bytes >= limits.batch_bytes or batch.rows >= limits.batch_changes:
                    return


def run_summary(report: Mapping[str, Any]) -> str:
    """The run report as one readable line (the full report is the task's XCom)."""
    applied = ", ".join(f"{name} {count}" for name, count in report.get("applied", {}).items()) or "-"
    tables = sorted({table for counts in report.get("tables", {}).values() for table in counts})
    snapshot = report.get("snapshot")
    parts = [
        f"cdc run {report.get('source')}: {'caught up' if report.get('caught_up') else 'NOT caught up'}",
        f"{report.get('changes_read', 0)} changes read in {report.get('transactions', 0)} transactions, "
        f"{report.get('batches', 0)} batches",
        f"applied {applied}",
        f"tables {','.join(tables) or '-'}",
        f"{report.get('start_lsn')}..{report.get('end_lsn')}",
        f"lag {report.get('lag_bytes')} bytes / {report.get('lag_seconds')} s",
        f"{report.get('seconds')} s",
    ]
    if snapshot:
        parts.append(f"snapshot {sum(snapshot.get('rows', {}).values())} rows of {len(snapshot.get('tables', []))} tables")
    if report.get("dead_lettered"):
        parts.append(f"dead-lettered {report['dead_lettered']} ({report.get('dead_letters_unresolved')} unresolved)")
    if report.get("warnings"):
        parts.append(f"{len(report['warnings'])} manifest warning(s)")
    return "; ".join(parts)


def source_connectors(source: str) -> dict[str, Callable[[], Any]]:
    """``connect``/``replication_connect``/``owner_connect``/``stream_params`` for a configured source."""
    from psycopg2.extras import LogicalReplicationConnection

    from paydata import settings

    capture_conn_id = settings.capture_conn_id(source)
    owner_conn_id = settings.owner_conn_id(source)
    return {
        "connect": lambda: settings.pg_connect(capture_conn_id),
        "replication_connect": lambda: settings.pg_connect(
            capture_conn_id, connection_factory=LogicalReplicationConnection
        ),
        "owner_connect": lambda: settings.pg_connect(owner_conn_id),
        "stream_params": lambda: settings.connection(capture_conn_id).psycopg2_kwargs(),
    }


def default_sinks() -> list[Sink]:
    """The production sinks: the warehouse staging layer and MongoDB."""
    from paydata import settings
    from paydata.cdc.sinks.mongo import MongoSink
    from paydata.cdc.sinks.warehouse import WarehouseSink

    return [
        WarehouseSink(lambda: settings.pg_connect(settings.WAREHOUSE_CONN_ID)),
        # The CDC writer may only read and write the CDC collections; definitions are the administrator's.
        MongoSink(lambda: settings.mongo_database(settings.MONGO_CDC_CONN_ID)),
    ]


def engine_for_source(source: str, sinks: Sequence[Sink] | None = None, limits: EngineLimits | None = None) -> CdcEngine:
    """The engine for a source with a manifest (``settings.cdc_sources()``), its connections and sinks."""
    from paydata import settings

    if source not in settings.cdc_sources():
        raise ValueError(f"unknown CDC source {source!r}: expected one of {settings.cdc_sources()} "
                         f"(a manifest in {settings.cdc_manifest_dir()})")
    from paydata.cdc.deadletters import PostgresDeadLetterStore

    return CdcEngine(
        load_manifest(source), default_sinks() if sinks is None else sinks, limits=limits,
        ledger=warehouse_ledger(),
        dead_letters=PostgresDeadLetterStore(lambda: settings.pg_connect(settings.WAREHOUSE_CONN_ID)),
        **source_connectors(source),
    )


__all__ = [
    "SNAPSHOT_INDEX_BASE",
    "CdcEngine",
    "EngineLimits",
    "SinkContractError",
    "default_sinks",
    "engine_for_source",
    "resnapshot_command",
    "source_connectors",
]
