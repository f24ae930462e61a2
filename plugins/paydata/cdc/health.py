"""Slot health: lag, WAL retention status, heartbeats, and loud failure when a slot is lost.

An unconsumed logical slot makes the server keep WAL. With ``max_slot_wal_keep_size`` set the
server eventually invalidates the slot (``wal_status = 'lost'``) to protect its disk; the changes
in between are gone, so the only recovery is a new slot with a fresh snapshot. This module turns
that state, a slot that vanished after a snapshot was recorded for it, or a slot that is not the
one the engine has been reading (recreated under the same name, or moved by another consumer: its
position is past the engine's confirm ledger, :mod:`paydata.cdc.ledger`) into
:class:`SlotLostError` whose message is the exact command to run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from paydata.cdc.capture import emit_heartbeat, read_publication_state, slot_row
from paydata.cdc.ledger import ConfirmLedger, LedgerEntry
from paydata.cdc.manifest import Manifest
from paydata.cdc.pgoutput import format_lsn, parse_lsn

# wal_status values: 'reserved'/'extended' are healthy, 'unreserved' means the next checkpoint may
# remove needed WAL, 'lost' means it did.
HEALTHY_WAL_STATUS = frozenset({"reserved", "extended"})


class SlotLostError(RuntimeError):
    """The slot can no longer deliver every change; the message says how to re-snapshot."""


class SlotIdentityError(SlotLostError):
    """The slot is not the one the sinks were fed from: it starts past changes they never received."""


def resnapshot_command(source: str) -> str:
    return f"python -m paydata.cdc resnapshot --source {source}"


def adopt_command(source: str) -> str:
    return f"python -m paydata.cdc adopt-slot --source {source}"


def check_slot_identity(source: str, slot: str, row: dict[str, Any], entry: LedgerEntry | None) -> None:
    """Raise :class:`SlotIdentityError` unless ``row`` (an existing slot with a recorded snapshot) can
    still deliver every change the sinks lack.

    The slot delivers every transaction that commits after its ``confirmed_flush_lsn``; the engine
    writes each position to its confirm ledger before reporting it, so the slot it has been
    reading is never past the ledger. A position past it means the slot was recreated (or moved
    by another consumer), and the changes in between never reached the sinks. No ledger entry for
    the slot means nothing can vouch for it.
    """
    confirmed = parse_lsn(row["confirmed_flush_lsn"])
    if entry is None or entry.slot != slot:
        raise SlotIdentityError(
            f"replication slot {slot!r} of source {source!r} has a recorded snapshot but the confirm ledger "
            f"holds no position for it ({'no entry' if entry is None else f'the entry is for slot {entry.slot!r}'}): "
            "nothing shows that it still holds every change the sinks lack. Re-snapshot with: "
            f"{resnapshot_command(source)} (or, if you know this slot is the one the sinks were fed from, "
            f"record its position with: {adopt_command(source)})"
        )
    if confirmed > entry.confirmed_lsn:
        raise SlotIdentityError(
            f"replication slot {slot!r} of source {source!r} starts at {format_lsn(confirmed)}, past "
            f"{format_lsn(entry.confirmed_lsn)}, the last position this engine reported to it: the slot was "
            "recreated or advanced by another consumer, and changes committed in between never reached the "
            f"sinks. Re-snapshot with: {resnapshot_command(source)}"
        )


@dataclass(frozen=True)
class SlotHealth:
    """What ``status`` and the DAG report about a source's slot.

    ``lag_bytes``: WAL between the slot's confirmed position and the server's current position:
    what decoding still has to read. WAL is one stream per cluster, so this counts every
    database's writes since that position, not only the source's; a caught-up run confirms the
    server's sent position at its end, so writes made before then (the sinks' own, when they share
    the cluster) do not count. ``retained_bytes``: WAL the server keeps for the slot (from its
    ``restart_lsn``), which is what ``max_slot_wal_keep_size`` caps; ``safe_wal_size``: bytes
    that can still be written before the slot is in danger of being invalidated (None: no cap).
    ``lag_seconds``: age of the newest source commit or heartbeat the sinks hold (from the confirm
    ledger); the CDC DAG emits a heartbeat before every run, so on an idle source it stays near
    the schedule interval.
    """

    source: str
    slot: str
    exists: bool
    wal_status: str | None
    lag_bytes: int | None
    confirmed_flush_lsn: str | None
    current_wal_lsn: str | None
    active_pid: int | None
    snapshot_recorded: bool
    retained_bytes: int | None = None
    safe_wal_size: int | None = None
    lag_seconds: float | None = None
    ledger_lsn: str | None = None

    @property
    def healthy(self) -> bool:
        return self.exists and self.wal_status in HEALTHY_WAL_STATUS

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}


def assess_slot(source: str, slot: str, row: dict[str, Any] | None, *, snapshot_recorded: bool) -> SlotHealth:
    """Judge a ``pg_replication_slots`` row (None: no such slot); raise SlotLostError if it is lost.

    Lost means ``wal_status = 'lost'``, or no slot although a completed snapshot was recorded for
    it (someone dropped it, or the cluster was restored without it). A missing slot with nothing
    recorded is simply not created yet. Whether an existing slot is the right one is
    :func:`check_slot_identity`'s question.
    """
    if row is None:
        if snapshot_recorded:
            raise SlotLostError(
                f"replication slot {slot!r} of source {source!r} is missing although a snapshot was "
                "recorded for it: changes since it disappeared are lost. Re-snapshot with: "
                f"{resnapshot_command(source)}"
            )
        return SlotHealth(source, slot, False, None, None, None, None, None, snapshot_recorded)
    if row.get("wal_status") == "lost":
        raise SlotLostError(
            f"replication slot {slot!r} of source {source!r} is lost (wal_status='lost'): the server "
            "removed WAL it still needed (max_slot_wal_keep_size exceeded). Re-snapshot with: "
            f"{resnapshot_command(source)}"
        )
    return SlotHealth(
        source,
        slot,
        True,
        row.get("wal_status"),
        row.get("lag_bytes"),
        row.get("confirmed_flush_lsn"),
        row.get("current_wal_lsn"),
        row.get("active_pid"),
        snapshot_recorded,
        retained_bytes=row.get("retained_bytes"),
        safe_wal_size=row.get("safe_wal_size"),
    )


def check_slot(conn, manifest: Manifest, ledger: ConfirmLedger) -> SlotHealth:
    """Read the slot, the recorded snapshot state and the confirm ledger of ``manifest``'s source.

    Raises :class:`SlotLostError` (lost or missing slot) or :class:`SlotIdentityError` (a slot
    past the ledger, or one the ledger knows nothing of); see :func:`assess_slot` and
    :func:`check_slot_identity`.
    """
    state = read_publication_state(conn, manifest.publication)
    recorded = state.snapshot_complete and state.slot == manifest.slot
    row = slot_row(conn, manifest.slot)
    health = assess_slot(manifest.source, manifest.slot, row, snapshot_recorded=recorded)
    if row is None or not recorded:
        return health
    entry = ledger.entry(manifest.source)
    check_slot_identity(manifest.source, manifest.slot, row, entry)
    lag_seconds = None
    if entry.source_time is not None:
        lag_seconds = round(max(0.0, (datetime.now(UTC) - entry.source_time).total_seconds()), 3)
    return replace(health, lag_seconds=lag_seconds, ledger_lsn=format_lsn(entry.confirmed_lsn))


def heartbeat(conn, manifest: Manifest) -> int:
    """Emit a heartbeat into the source's WAL so an idle slot has a position to advance to."""
    return emit_heartbeat(conn, heartbeat_content(manifest.source))


def heartbeat_content(source: str, now: datetime | None = None) -> str:
    """``<source> <ISO time>``: the time lets a run that confirms the heartbeat report its lag."""
    return f"{source} {(now or datetime.now(UTC)).isoformat()}"


def heartbeat_time(content: bytes) -> datetime | None:
    """The time in a heartbeat's content, or None if it holds none."""
    try:
        return datetime.fromisoformat(content.decode("utf-8").rsplit(" ", 1)[-1])
    except (UnicodeDecodeError, ValueError):
        return None


def warehouse_ledger() -> ConfirmLedger:
    """The production confirm ledger, in the warehouse database."""
    from paydata import settings
    from paydata.cdc.ledger import PostgresConfirmLedger

    return PostgresConfirmLedger(
        lambda: settings.pg_connect(settings.WAREHOUSE_LOADER_CONN_ID, **settings.pg_deadlines(statements=True)))


def source_health(source: str) -> SlotHealth:
    """:func:`check_slot` for a configured source (capture connection, warehouse ledger)."""
    from paydata import settings
    from paydata.cdc.manifest import load_manifest

    conn = settings.pg_connect(settings.capture_conn_id(source))
    ledger = warehouse_ledger()
    try:
        return check_slot(conn, load_manifest(source), ledger)
    finally:
        conn.close()
        ledger.close()


def slot_health(source: str) -> dict[str, Any]:
    """Check ``source``'s slot (raises SlotLostError if lost or not the engine's), emit a heartbeat,
    return the health dict."""
    from paydata import settings
    from paydata.cdc.manifest import load_manifest

    health = source_health(source)
    conn = settings.pg_connect(settings.capture_conn_id(source))
    try:
        heartbeat_lsn = heartbeat(conn, load_manifest(source))
    finally:
        conn.close()
    return {**health.as_dict(), "heartbeat_lsn": heartbeat_lsn}
