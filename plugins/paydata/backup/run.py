"""Take an encrypted backup, restore it, and drill the restore.

* :func:`take_backup` - ``pg_dump -Fc`` of each database (the key store included) and an export of
  the Mongo database, each streamed straight through :func:`paydata.backup.stream.encrypt_stream`
  into its file; row counts and checksums of every table from the dump's own snapshot; a sealed
  manifest. Idempotent per backup id: a complete backup is returned as it is.
* :func:`restore` - decrypts a backup's files into ``pg_restore`` / Mongo, into the databases
  named (by default the restore-drill scratch databases).
* :func:`restore_drill` - restores the latest backup into the scratch databases, reconciles rows
  and checksums with the manifest, empties the scratch databases again and records the result
  beside the backup (``drill.json``, with the WAL position it reached: the erasure window needs it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from paydata import settings
from paydata.backup import catalog
from paydata.backup.sources import (
    mongo_export,
    mongo_import,
    mongo_stats,
    pg_dump_stream,
    pg_restore_stream,
    table_stats,
)
from paydata.backup.stream import (
    DEFAULT_CHUNK,
    BackupIntegrityError,
    BackupKey,
    backup_kek_ring,
    decrypt_stream,
    encrypt_stream,
)
from paydata.crypto import KeyRing
from paydata.sql import load_sql

DATABASES = ("reference", "oltp", "warehouse", "keystore")
MONGO_ARTIFACT = "mongo"


class _HashingWriter:
    def __init__(self, handle) -> None:
        self._handle = handle
        self.digest = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self._handle.write(data)
        self.digest.update(data)
        self.bytes += len(data)


def _file_name(artifact: str) -> str:
    return f"{artifact}.pdbk"


def _encrypt_to(path: Path, pieces: Iterable[bytes], key: BackupKey, backup_id: str, artifact: str,
                chunk_size: int) -> dict:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb", buffering=1 << 20) as handle:
        writer = _HashingWriter(handle)
        stats = encrypt_stream(pieces, writer, key, backup_id=backup_id, artifact=artifact, chunk_size=chunk_size)
        handle.flush()
        os.fsync(handle.fileno())
    return {"file": path.name, "bytes": writer.bytes, "sha256": writer.digest.hexdigest(),
            "plaintext_bytes": stats.plaintext_bytes, "plaintext_sha256": stats.plaintext_sha256,
            "chunks": stats.chunks}


def _dump_database(database: str, path: Path, key: BackupKey, backup_id: str, chunk_size: int,
                   checksums: bool) -> dict:
    conn_id = settings.POSTGRES_DATABASES[database]
    conn = settings.pg_connect(conn_id)
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cursor:
            cursor.execute(load_sql("cluster/queries/backup/begin_snapshot.sql"))
            (snapshot,) = cursor.fetchone()
            started = time.perf_counter()
            with pg_dump_stream(conn_id, snapshot) as pieces:
                entry = _encrypt_to(path, pieces, key, backup_id, database, chunk_size)
            entry["dump_seconds"] = round(time.perf_counter() - started, 3)
            started = time.perf_counter()
            tables = table_stats(cursor) if checksums else {}
            entry["stats_seconds"] = round(time.perf_counter() - started, 3)
        conn.rollback()
    finally:
        conn.close()
    return {"artifact": database, "kind": "postgres", "database": database, **entry, "tables": tables}


def _export_mongo(path: Path, key: BackupKey, backup_id: str, chunk_size: int) -> dict:
    client = settings.mongo_client(settings.MONGO_BACKUP_CONN_ID)
    try:
        conn = settings.connection(settings.MONGO_BACKUP_CONN_ID)
        database = client[conn.schema or settings.MONGO_DATABASE]
        started = time.perf_counter()
        pieces, stats = mongo_export(database)
        entry = _encrypt_to(path, pieces, key, backup_id, MONGO_ARTIFACT, chunk_size)
        entry["dump_seconds"] = round(time.perf_counter() - started, 3)
    finally:
        client.close()
    return {"artifact": MONGO_ARTIFACT, "kind": "mongo", "database": database.name, **entry, "tables": stats}


def take_backup(root: Path, backup_id: str, *, databases: Iterable[str] = DATABASES, mongo: bool = True,
                retention_days: int | None = None, chunk_size: int = DEFAULT_CHUNK, checksums: bool = True,
                ring: KeyRing | None = None, now: dt.datetime | None = None) -> dict:
    """Write backup ``backup_id`` under ``root`` and return its manifest (see the module docstring).

    Raises :class:`paydata.backup.sources.BackupSourceError` if a dump fails (nothing is left but
    a ``.partial`` folder that the next run replaces), :class:`paydata.crypto.KeyConfigError`
    without a backup KEK.
    """
    catalog.check_id(backup_id)
    ring = ring or backup_kek_ring()
    final = root / backup_id
    if (final / catalog.MANIFEST).exists():
        manifest = catalog.load_manifest(root, backup_id)
        catalog.verify(manifest, ring)
        return manifest
    databases = list(databases)
    for database in databases:
        if database not in settings.POSTGRES_DATABASES:
            raise ValueError(f"unknown database {database!r}; choose from {', '.join(settings.POSTGRES_DATABASES)}")
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    partial = root / f".{backup_id}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700)
    started_at = now or dt.datetime.now(dt.UTC)
    days = retention_days if retention_days is not None else catalog.retention_days()
    key = BackupKey.new(ring)
    started = time.perf_counter()
    artifacts = [_dump_database(database, partial / _file_name(database), key, backup_id, chunk_size, checksums)
                 for database in databases]
    if mongo:
        artifacts.append(_export_mongo(partial / _file_name(MONGO_ARTIFACT), key, backup_id, chunk_size))
    manifest = catalog.seal({
        "format": 1, "backup_id": backup_id, "cipher": "AES-256-GCM-STREAM", "chunk_size": chunk_size,
        "kek_id": key.kek_id, "wrapped_key": key.wrapped.hex(),
        "started_at": started_at.isoformat(), "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "expires_at": (started_at + dt.timedelta(days=days)).isoformat(), "retention_days": days,
        "seconds": round(time.perf_counter() - started, 3), "artifacts": artifacts,
        "bytes": sum(a["bytes"] for a in artifacts),
    }, key)
    catalog.write_json(partial / catalog.MANIFEST, manifest)
    os.replace(partial, final)
    return manifest


def _artifact_pieces(root: Path, manifest: dict, artifact: dict, ring: KeyRing, key: BackupKey) -> Iterator[bytes]:
    """Authenticated plaintext of one file, checked against the manifest's sizes and hashes."""
    path = root / manifest["backup_id"] / artifact["file"]
    digest, size = hashlib.sha256(), 0
    file_digest = hashlib.sha256()
    with open(path, "rb") as raw:
        class _Hashing:
            def read(self, n: int) -> bytes:
                data = raw.read(n)
                file_digest.update(data)
                return data

        for piece in decrypt_stream(_Hashing(), ring, expect_backup=manifest["backup_id"],
                                    expect_artifact=artifact["artifact"]):
            digest.update(piece)
            size += len(piece)
            yield piece
    if file_digest.hexdigest() != artifact["sha256"]:
        raise BackupIntegrityError(f"{path.name} is not the file the manifest describes (SHA-256 differs)")
    if size != artifact["plaintext_bytes"] or digest.hexdigest() != artifact["plaintext_sha256"]:
        raise BackupIntegrityError(f"{path.name} decrypted to other content than the manifest records")


def _reconcile(expected: dict, actual: dict) -> list[str]:
    problems = []
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            problems.append(f"{name}: missing after restore")
        elif name not in expected:
            problems.append(f"{name}: not in the manifest")
        elif expected[name] != actual[name]:
            problems.append(f"{name}: manifest {expected[name]} != restored {actual[name]}")
    return problems


def _clear_database(conn_id: str, dbname: str) -> str:
    """Empty a scratch database; return the WAL insert position afterwards."""
    conn = settings.pg_connect(conn_id, dbname=dbname)
    try:
        with conn.cursor() as cursor:
            cursor.execute(load_sql("cluster/queries/backup/drop_user_schemas.sql"))
            cursor.execute(load_sql("cluster/queries/backup/current_lsn.sql"))
            (lsn,) = cursor.fetchone()
        conn.commit()
        return lsn
    finally:
        conn.close()


def restore(root: Path, backup_id: str | None = None, *, targets: dict[str, str] | None = None,
            ring: KeyRing | None = None, reconcile: bool = True, keep: bool = False) -> dict:
    """Restore a backup (default: the latest) and reconcile it with its manifest.

    ``targets`` maps artifact -> target database (Postgres artifacts: a database on the same server
    reachable with the source's connection; ``mongo``: a Mongo database name); default: the
    restore-drill scratch databases. Each target is emptied first. Unless ``keep``, targets are
    emptied again afterwards (a drill keeps no copy of the data). Returns per-artifact results with
    ``problems`` (empty when rows and checksums match) and the last WAL position written.
    """
    ring = ring or backup_kek_ring()
    manifest = catalog.load_manifest(root, backup_id) if backup_id else catalog.latest(root)
    key = catalog.verify(manifest, ring)
    targets = targets or {}
    results, last_lsn = {}, None
    for artifact in manifest["artifacts"]:
        name = artifact["artifact"]
        started = time.perf_counter()
        pieces = _artifact_pieces(root, manifest, artifact, ring, key)
        if artifact["kind"] == "postgres":
            conn_id = settings.POSTGRES_DATABASES[artifact["database"]]
            target = targets.get(name, settings.restore_drill_database(artifact["database"]))
            _clear_database(conn_id, target)
            pg_restore_stream(conn_id, target, pieces)
            actual = {}
            if reconcile and artifact["tables"]:
                conn = settings.pg_connect(conn_id, dbname=target)
                try:
                    with conn.cursor() as cursor:
                        actual = table_stats(cursor)
                finally:
                    conn.close()
            if not keep:
                last_lsn = _clear_database(conn_id, target)
        else:
            drill_target = settings.restore_drill_database(artifact["database"])
            target = targets.get(name, drill_target)
            # The backup user may write only the drill's scratch database; any other target (a real
            # restore) needs the administrator.
            client = settings.mongo_client(settings.MONGO_BACKUP_CONN_ID if target == drill_target
                                           else settings.MONGO_CONN_ID)
            try:
                database = client[target]
                client.drop_database(target)
                mongo_import(database, pieces)
                actual = mongo_stats(database) if reconcile else {}
                if not keep:
                    client.drop_database(target)
            finally:
                client.close()
        problems = _reconcile(artifact["tables"], actual) if reconcile and artifact["tables"] else []
        results[name] = {"target": target, "problems": problems, "seconds": round(time.perf_counter() - started, 3),
                         "tables": len(artifact["tables"])}
    return {"backup_id": manifest["backup_id"], "artifacts": results, "last_lsn": last_lsn,
            "ok": all(not r["problems"] for r in results.values())}


@dataclass(frozen=True)
class DrillResult:
    backup_id: str
    ok: bool
    seconds: float
    problems: dict
    bytes: int

    def as_dict(self) -> dict:
        return {"backup_id": self.backup_id, "ok": self.ok, "seconds": self.seconds, "problems": self.problems,
                "bytes": self.bytes}


def restore_drill(root: Path, backup_id: str | None = None, *, ring: KeyRing | None = None) -> DrillResult:
    """Restore the latest backup (or ``backup_id``) into the scratch databases, reconcile, empty
    them, and record the result in ``drill.json`` beside the backup. Integrity failures (wrong
    key, altered or truncated file) raise; a reconciliation mismatch is a failed drill
    (``ok=False``, recorded) so the caller can fail the task with the details."""
    manifest = catalog.load_manifest(root, backup_id) if backup_id else catalog.latest(root)
    started = time.perf_counter()
    outcome = restore(root, manifest["backup_id"], ring=ring)
    seconds = round(time.perf_counter() - started, 3)
    problems = {name: r["problems"] for name, r in outcome["artifacts"].items() if r["problems"]}
    catalog.write_json(root / manifest["backup_id"] / catalog.DRILL, {
        "backup_id": manifest["backup_id"], "ok": outcome["ok"], "seconds": seconds, "problems": problems,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(), "finished_lsn": outcome["last_lsn"],
        "backup_started_at": manifest["started_at"],
    })
    return DrillResult(manifest["backup_id"], outcome["ok"], seconds, problems, manifest["bytes"])
