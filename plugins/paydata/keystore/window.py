"""The erasure window: after an erasure, bound the life of every copy and prove it ended.

An erasure (:func:`paydata.oltp.erasure.erase_customer`) deletes the subject's data key and wipes
OLTP, but copies outlive the statements for a while:

* the deleted key's bytes stay in the key table's file (a dead tuple) until the table is rewritten;
* the old OLTP row versions stay in their pages until VACUUM prunes them;
* the WAL holds all of it (inserts, updates, full-page images) until its segments are removed,
  which needs a checkpoint past it and every replication slot confirmed past it;
* a backup taken before the erasure holds it until the backup expires, and a restore drill of such
  a backup writes it into the WAL again.

:func:`close_window` does the platform's part (rewrite key tables holding destroyed keys,
VACUUM the sources' erasure tables, switch the WAL segment and checkpoint). :func:`erasure_status`
checks, per erased customer, that every one of those copies is gone, from facts the databases
record (no file access needed); :func:`complete_erasures` writes an ``erasure_completed`` audit
row for each erasure whose window has closed. The key store and the sources share one cluster
here (one WAL); with separate clusters, run the WAL check against each.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path

from paydata.keystore.store import OWNERS, KeyStore, default_keystore, plain_statement, statement
from paydata.oltp import audit
from paydata.oltp._db import oltp_sql, transaction


def parse_lsn(text: str | None) -> int:
    if not text:
        return 0
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass(frozen=True)
class WalState:
    oldest_segment: str | None
    oldest_lsn: int          # start of the oldest segment still in pg_wal
    settings: dict
    slots: list[tuple[str, int, str]]

    def safe(self) -> list[str]:
        """Reasons the server can keep WAL copies beyond what pg_wal shows (empty when none)."""
        problems = []
        if self.settings.get("wal_recycle") != "off":
            problems.append("wal_recycle is on: removed segments are renamed for reuse with old contents")
        if self.settings.get("archive_mode") not in ("off", None):
            problems.append("archive_mode is on: the WAL archive keeps copies for as long as it is kept")
        return problems


def wal_state(keystore_conn) -> WalState:
    with keystore_conn.cursor() as cursor:
        cursor.execute(plain_statement("oldest_wal_segment"))
        (oldest,) = cursor.fetchone()
        cursor.execute(plain_statement("wal_settings"))
        settings = dict(cursor.fetchall())
        cursor.execute(plain_statement("slot_positions"))
        slots = [(name, parse_lsn(lsn), status) for name, lsn, status in cursor.fetchall()]
    segment_size = int(settings.get("wal_segment_size", 16 << 20))
    oldest_lsn = 0
    if oldest:
        oldest_lsn = (int(oldest[8:16], 16) << 32) + int(oldest[16:24], 16) * segment_size
    return WalState(oldest, oldest_lsn, settings, slots)


def _now_and_lsn(cursor) -> tuple[dt.datetime, str]:
    cursor.execute(plain_statement("current_lsn"))
    return cursor.fetchone()


def compact_key_tables(keys: KeyStore) -> list[dict]:
    """Rewrite (VACUUM FULL) each key table holding a key destroyed since its last rewrite; record it.

    The rewrite copies live keys only and unlinks the old file. Takes an exclusive lock on the key
    table for the rewrite (milliseconds for thousands of keys, seconds for millions).
    """
    done = []
    conn = keys.connection()
    for owner, (table, _) in OWNERS.items():
        with conn.cursor() as cursor:
            cursor.execute(plain_statement("pending_compaction"), {"owner_table": owner, "table_name": table})
            if not cursor.fetchone()[0]:
                continue
            started_at, started_lsn = _now_and_lsn(cursor)
            cursor.execute(statement("vacuum_full", owner))
            cursor.execute(plain_statement("record_compaction"),
                           {"table_name": table, "started_at": started_at, "started_lsn": started_lsn})
            compaction_id, finished_at, finished_lsn = cursor.fetchone()
        done.append({"table": table, "compaction_id": compaction_id, "finished_lsn": finished_lsn})
    return done


def vacuum_sources(oltp_conn, keys: KeyStore) -> dict:
    """VACUUM the OLTP tables an erasure rewrites and record it in the key store."""
    previous = oltp_conn.autocommit
    oltp_conn.autocommit = True
    try:
        with oltp_conn.cursor() as cursor:
            cursor.execute(oltp_sql("clock_now"))
            (started_at,) = cursor.fetchone()
            cursor.execute(oltp_sql("vacuum_erasure_tables"))
            cursor.execute(oltp_sql("current_wal_lsn"))
            (finished_lsn,) = cursor.fetchone()
    finally:
        oltp_conn.autocommit = previous
    with keys.connection().cursor() as cursor:
        cursor.execute(plain_statement("record_source_vacuum"),
                       {"database_name": "oltp", "started_at": started_at, "finished_lsn": finished_lsn})
    return {"database": "oltp", "finished_lsn": finished_lsn}


def push_wal(keys: KeyStore) -> WalState:
    """End the current WAL segment and checkpoint, so segments nothing needs any more are removed."""
    conn = keys.connection()
    with conn.cursor() as cursor:
        cursor.execute(plain_statement("switch_wal"))
        cursor.execute(plain_statement("checkpoint"))
    return wal_state(conn)


def close_window(oltp_conn, keys: KeyStore | None = None) -> dict:
    """The platform's part of every pending erasure window (idempotent; see the module docstring)."""
    keys = keys or default_keystore()
    compacted = compact_key_tables(keys)
    vacuumed = vacuum_sources(oltp_conn, keys)
    state = push_wal(keys)
    return {"compacted": compacted, "vacuumed": vacuumed, "oldest_wal_segment": state.oldest_segment}


@dataclass
class ErasureStatus:
    customer_id: int
    erased_at: str
    complete: bool = False
    checks: dict = field(default_factory=dict)      # check name -> True / reason it is not done yet
    threshold_lsn: str | None = None                 # WAL before this may still hold the data

    def as_dict(self) -> dict:
        return asdict(self)


def _backups_before(backup_dir: Path | None, moment: dt.datetime) -> tuple[list[str], list[dict]]:
    if backup_dir is None:
        return [], []
    from paydata.backup import catalog

    older, drills = [], []
    for manifest in catalog.list_backups(backup_dir):
        if dt.datetime.fromisoformat(manifest["started_at"]) <= moment:
            older.append(manifest["backup_id"])
            drill = catalog.read_drill(backup_dir, manifest["backup_id"])
            if drill and drill.get("finished_lsn"):
                drills.append(drill)
    return older, drills


def erasure_status(oltp_conn, customer_id: int, erased_at: dt.datetime, detail: dict, *,
                   keys: KeyStore | None = None, backup_dir: Path | None = None,
                   wal: WalState | None = None) -> ErasureStatus:
    """Whether every copy of the erased customer's data is gone (see the module docstring)."""
    keys = keys or default_keystore()
    status = ErasureStatus(customer_id, erased_at.isoformat())
    checks = status.checks
    held = keys.key_ids("customer", customer_id)
    checks["key_destroyed"] = True if not held else f"the key store still holds {len(held)} key(s)"
    with transaction(oltp_conn, "erasure residue") as cursor:
        cursor.execute(oltp_sql("customer_residue"), {"customer_id": customer_id})
        personal, linked, attached = cursor.fetchone()
    checks["oltp_wiped"] = True if (personal, linked, attached) == (0, 0, 0) else (
        f"personal fields {personal}, linked charges {linked}, attached cards {attached}")
    thresholds = [parse_lsn(detail.get("wal_lsn"))]
    conn = keys.connection()
    with conn.cursor() as cursor:
        cursor.execute(plain_statement("destruction_of_owner"), {"owner_table": "customer", "owner_id": customer_id})
        destroyed = cursor.fetchall()
        uncovered = []
        for key_id, _reason, _at, destroyed_lsn in destroyed:
            cursor.execute(plain_statement("covering_compaction"),
                           {"table_name": OWNERS["customer"][0], "destroyed_lsn": destroyed_lsn})
            found = cursor.fetchone()
            if found is None:
                uncovered.append(key_id)
            else:
                thresholds.append(parse_lsn(found[1]))
        checks["key_table_rewritten"] = True if not uncovered else (
            f"{len(uncovered)} destroyed key(s) may still be in the key table's file (no rewrite since)")
        cursor.execute(plain_statement("covering_source_vacuum"), {"database_name": "oltp", "erased_at": erased_at})
        vacuum = cursor.fetchone()
    if vacuum is None:
        checks["sources_vacuumed"] = "no VACUUM of the OLTP erasure tables since the erasure"
    else:
        checks["sources_vacuumed"] = True
        thresholds.append(parse_lsn(vacuum[1]))
    older, drills = _backups_before(backup_dir, erased_at)
    checks["backups_expired"] = True if not older else (
        f"{len(older)} backup(s) taken before the erasure still exist (oldest {older[0]}); they expire "
        "with the retention period")
    thresholds += [parse_lsn(drill["finished_lsn"]) for drill in drills]
    threshold = max(thresholds)
    status.threshold_lsn = format_lsn(threshold)
    wal = wal or wal_state(conn)
    unsafe = wal.safe()
    checks["wal_settings"] = True if not unsafe else "; ".join(unsafe)
    if wal.oldest_lsn <= threshold:
        blocking = [name for name, restart, _ in wal.slots if restart and restart <= threshold]
        checks["wal_clear"] = (f"pg_wal still starts at {wal.oldest_segment}, before {format_lsn(threshold)}"
                               + (f"; slot(s) {', '.join(blocking)} not confirmed past it" if blocking else
                                  "; wait for a checkpoint"))
    else:
        checks["wal_clear"] = True
    status.complete = all(value is True for value in checks.values())
    return status


def complete_erasures(oltp_conn, *, keys: KeyStore | None = None, backup_dir: Path | None = None,
                      limit: int = 1000) -> dict:
    """Check every erasure not yet proven complete; record ``erasure_completed`` for those whose
    window closed. Idempotent: a completed erasure is never checked or recorded twice. Returns
    counts and the pending erasures with their open checks."""
    keys = keys or default_keystore()
    with transaction(oltp_conn, "pending erasures") as cursor:
        cursor.execute(oltp_sql("erasures_pending_completion"), {"limit": limit})
        pending = cursor.fetchall()
    wal = wal_state(keys.connection())
    completed, still_open = [], []
    for _audit_id, customer_id, occurred_at, detail in pending:
        status = erasure_status(oltp_conn, customer_id, occurred_at, detail or {}, keys=keys,
                                backup_dir=backup_dir, wal=wal)
        if not status.complete:
            still_open.append(status.as_dict())
            continue
        with transaction(oltp_conn, f"record completed erasure of customer {customer_id}") as cursor:
            cursor.execute(oltp_sql("audit_completion_of"), {"customer_id": customer_id})
            if cursor.fetchone()[0] == 0:
                audit.record(cursor, "erasure_completed", "customer", customer_id, reason="window_closed",
                             detail={"erased_at": status.erased_at, "threshold_lsn": status.threshold_lsn,
                                     "oldest_wal_segment": wal.oldest_segment,
                                     "checks": sorted(status.checks)})
        completed.append(customer_id)
    return {"checked": len(pending), "completed": len(completed), "open": len(still_open),
            "open_erasures": still_open[:20]}
