"""Streaming: read the slot's changes in bounded batches, apply each through every sink, confirm it.

One replication session per run (:mod:`paydata.cdc.wire`). Whole transactions are gathered into a
batch; the batch is handed to the sinks on a worker thread while the next one is read; after every
sink returned, its end is written to the confirm ledger and then confirmed to the server. A change
the policy cannot capture becomes a dead letter (or stops the run: ``on_error``). The argument for
exactly-once, with the positions and message types involved, is in docs/cdc.md.
"""

from __future__ import annotations

import contextlib
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg2

from paydata.cdc import capture, failpoints
from paydata.cdc.collector import collector_paused
from paydata.cdc.deadletters import DeadLetter
from paydata.cdc.health import (
    SlotLostError,
    assess_slot,
    check_slot_identity,
    heartbeat_time,
)
from paydata.cdc.model import CapturedChange, CapturedRow, Position, RowSink, Sink
from paydata.cdc.pgoutput import LogicalMessage, PgOutputDecoder, format_lsn, parse_lsn
from paydata.cdc.wire import ReplicationStream

log = logging.getLogger(__name__)

HEARTBEAT_PREFIX = "paydata.heartbeat"  # include/sql/sources/queries/cdc/heartbeat.sql


class SinkContractError(RuntimeError):
    """A sink reported an applied position below the last change it was given."""


class CaptureError(RuntimeError):
    """A change of an ``on_error: stop`` table could not be captured; nothing of its batch was applied."""


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


class StreamSteps:
    """The streaming half of :class:`paydata.cdc.engine.CdcEngine` (its attributes are the engine's)."""

    def _apply_rows(self, sink: Sink, rows: list[CapturedRow]) -> Position:
        """Streamed rows to one sink: as text rows if it takes them (:class:`RowSink`), else parsed."""
        if not isinstance(sink, RowSink):
            return self._apply(sink, [row.typed() for row in rows])
        return self._checked(sink, sink.apply_rows(self.source, rows), rows[-1].position)

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
        decoder = PgOutputDecoder()
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
        letter = DeadLetter(self.source, table, change.commit_lsn, change.index_in_txn, change.kind, key,
                            columns, reason, commit_time)
        if self.manifest.tables[table].on_error == "stop":
            raise CaptureError(
                f"{self.source}.{table} change at {format_lsn(change.commit_lsn)}:{change.index_in_txn} "
                f"(key {letter.key_text}) cannot be captured: {reason} in column(s) {', '.join(columns) or '?'}. "
                "The table's manifest says on_error: stop, so nothing of this batch was applied and the slot "
                "was not advanced; fix the row in the source (or the policy) and rerun."
            ) from exc
        log.warning("dead-lettered %s.%s %s at %s:%d: %s in %s", self.source, table, change.kind,
                    format_lsn(change.commit_lsn), change.index_in_txn, reason, ", ".join(columns) or "?")
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
