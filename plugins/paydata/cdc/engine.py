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

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from paydata.cdc import capture
from paydata.cdc.deadletters import DeadLetterStore
from paydata.cdc.health import (
    SlotLostError,
    assess_slot,
    heartbeat_content,
    resnapshot_command,
    warehouse_ledger,
)
from paydata.cdc.ledger import ConfirmLedger
from paydata.cdc.manifest import Manifest, load_manifest
from paydata.cdc.model import Sink, TableSpec
from paydata.cdc.pgoutput import format_lsn, parse_lsn
from paydata.cdc.snapshots import SNAPSHOT_INDEX_BASE, SnapshotSteps
from paydata.cdc.streaming import CaptureError, SinkContractError, StreamSteps

log = logging.getLogger(__name__)


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


class CdcEngine(SnapshotSteps, StreamSteps):
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
            sink.prepare([spec for spec in specs if sink.name in spec.sinks])

    def _owner_conn(self):
        if self._owner is None or self._owner.closed:
            self._owner = self._owner_connect()
        return self._owner

    def _close_owner(self) -> None:
        if self._owner is not None and not self._owner.closed:
            self._owner.close()
        self._owner = None


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
        # The capture connection also reads the snapshot (COPY): its statements are not bounded.
        "connect": lambda: settings.pg_connect(capture_conn_id, **settings.pg_deadlines(statements=False)),
        "replication_connect": lambda: settings.pg_connect(
            capture_conn_id, connection_factory=LogicalReplicationConnection
        ),
        "owner_connect": lambda: settings.pg_connect(owner_conn_id, **settings.pg_deadlines(statements=True)),
        "stream_params": lambda: settings.connection(capture_conn_id).psycopg2_kwargs(),
    }


def default_sinks() -> list[Sink]:
    """The production sinks: the warehouse staging layer and MongoDB."""
    from paydata import settings
    from paydata.cdc.sinks.mongo import MongoSink
    from paydata.cdc.sinks.warehouse import WarehouseSink

    return [
        WarehouseSink(lambda: settings.pg_connect(settings.WAREHOUSE_LOADER_CONN_ID, **settings.pg_deadlines(statements=False))),
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
        dead_letters=PostgresDeadLetterStore(
            lambda: settings.pg_connect(settings.WAREHOUSE_LOADER_CONN_ID, **settings.pg_deadlines(statements=True))),
        **source_connectors(source),
    )


__all__ = [
    "SNAPSHOT_INDEX_BASE",
    "CaptureError",
    "CdcEngine",
    "EngineLimits",
    "SinkContractError",
    "default_sinks",
    "engine_for_source",
    "resnapshot_command",
    "source_connectors",
]
