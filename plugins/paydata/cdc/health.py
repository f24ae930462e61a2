"""Slot health: lag, WAL retention status, heartbeats, and loud failure when a slot is lost.

An unconsumed logical slot makes the server keep WAL. With ``max_slot_wal_keep_size`` set the
server eventually invalidates the slot (``wal_status = 'lost'``) to protect its disk; the changes
in between are gone, so the only recovery is a new slot with a fresh snapshot. This module turns
that state (or a slot that vanished after a snapshot was recorded for it) into
:class:`SlotLostError` whose message is the exact command to run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from paydata.cdc.capture import emit_heartbeat, read_publication_state, slot_row
from paydata.cdc.manifest import Manifest

# wal_status values: 'reserved'/'extended' are healthy, 'unreserved' means the next checkpoint may
# remove needed WAL, 'lost' means it did.
HEALTHY_WAL_STATUS = frozenset({"reserved", "extended"})


class SlotLostError(RuntimeError):
    """The slot can no longer deliver every change; the message says how to re-snapshot."""


def resnapshot_command(source: str) -> str:
    return f"python -m paydata.cdc resnapshot --source {source}"


@dataclass(frozen=True)
class SlotHealth:
    source: str
    slot: str
    exists: bool
    wal_status: str | None
    lag_bytes: int | None
    confirmed_flush_lsn: str | None
    current_wal_lsn: str | None
    active_pid: int | None
    snapshot_recorded: bool

    @property
    def healthy(self) -> bool:
        return self.exists and self.wal_status in HEALTHY_WAL_STATUS

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}


def assess_slot(source: str, slot: str, row: dict[str, Any] | None, *, snapshot_recorded: bool) -> SlotHealth:
    """Judge a ``pg_replication_slots`` row (None: no such slot); raise SlotLostError if it is lost.

    Lost means ``wal_status = 'lost'``, or no slot although a completed snapshot was recorded for
    it (someone dropped it, or the cluster was restored without it). A missing slot with nothing
    recorded is simply not created yet.
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
    )


def check_slot(conn, manifest: Manifest) -> SlotHealth:
    """Read the slot and the recorded snapshot state of ``manifest``'s source; see :func:`assess_slot`."""
    state = read_publication_state(conn, manifest.publication)
    recorded = state.snapshot_complete and state.slot == manifest.slot
    return assess_slot(manifest.source, manifest.slot, slot_row(conn, manifest.slot), snapshot_recorded=recorded)


def heartbeat(conn, manifest: Manifest) -> int:
    """Emit a heartbeat into the source's WAL so an idle slot has a position to advance to."""
    return emit_heartbeat(conn, f"{manifest.source} {datetime.now(UTC).isoformat()}")


def slot_health(source: str) -> dict[str, Any]:
    """Check ``source``'s slot (raises SlotLostError if lost), emit a heartbeat, return the health dict."""
    from paydata import settings
    from paydata.cdc.manifest import load_manifest

    manifest = load_manifest(source)
    conn = settings.pg_connect(f"paydata_cdc_{source}")
    try:
        health = check_slot(conn, manifest)
        heartbeat_lsn = heartbeat(conn, manifest)
    finally:
        conn.close()
    return {**health.as_dict(), "heartbeat_lsn": heartbeat_lsn}
