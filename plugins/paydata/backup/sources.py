"""What a backup reads and a restore writes: ``pg_dump``/``pg_restore`` pipes, the Mongo export,
and the row counts and checksums that reconcile a restore with its source.

Nothing here touches the disk: dumps are read from ``pg_dump``'s stdout and restores written to
``pg_restore``'s stdin; the Mongo export is a stream of BSON documents.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from psycopg2 import sql

from paydata import settings
from paydata.sql import load_sql

PIPE_CHUNK = 1 << 20
MONGO_MARKER = "$paydata_collection"


class BackupSourceError(RuntimeError):
    """A dump, restore or export failed; the message carries the tool's own error."""


def pg_binary(name: str) -> str:
    """``pg_dump``/``pg_restore`` from ``PAYDATA_PG_BIN_DIR`` (their major version must match the
    server's), else from ``PATH``."""
    folder = os.environ.get("PAYDATA_PG_BIN_DIR", "").strip()
    if folder:
        path = Path(folder) / name
        if not os.access(path, os.X_OK):
            raise BackupSourceError(f"PAYDATA_PG_BIN_DIR={folder} has no executable {name}")
        return str(path)
    return name


def libpq_env(conn_id: str, dbname: str | None = None) -> dict[str, str]:
    """Environment for a libpq tool connecting like ``conn_id`` (password via PGPASSWORD, never argv)."""
    kwargs = settings.connection(conn_id).psycopg2_kwargs()
    mapping = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
               "dbname": "PGDATABASE", "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
               "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY"}
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update({mapping[key]: str(value) for key, value in kwargs.items() if key in mapping})
    if dbname:
        env["PGDATABASE"] = dbname
    env["PGAPPNAME"] = "paydata-backup"
    return env


def _stderr_tail(process: subprocess.Popen) -> str:
    text = process.stderr.read().decode(errors="replace") if process.stderr else ""
    return text.strip()[-2000:] or "(no output)"


@contextmanager
def pg_dump_stream(conn_id: str, snapshot: str | None = None, extra: tuple[str, ...] = ()
                   ) -> Generator[Iterator[bytes], None, None]:
    """Yield an iterator over ``pg_dump -Fc`` output of ``conn_id``'s database.

    With ``snapshot`` the dump sees exactly that exported snapshot (so counts taken in the same
    snapshot match it). Raises :class:`BackupSourceError` if pg_dump fails.
    """
    # The marts' row security is FORCEd, so the owner reads through its policy (every row); without
    # --enable-row-security pg_dump would refuse those tables instead of reading them.
    command = [pg_binary("pg_dump"), "--format=custom", "--no-password", "--enable-row-security", *extra]
    if snapshot:
        command.append(f"--snapshot={snapshot}")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=libpq_env(conn_id))

    def pieces() -> Iterator[bytes]:
        while True:
            piece = process.stdout.read(PIPE_CHUNK)
            if not piece:
                return
            yield piece

    try:
        yield pieces()
        process.stdout.read()
        if process.wait() != 0:
            raise BackupSourceError(f"pg_dump of {conn_id} failed: {_stderr_tail(process)}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


def pg_restore_stream(conn_id: str, dbname: str, pieces: Iterable[bytes]) -> None:
    """Feed a custom-format dump into ``pg_restore`` into ``dbname`` (no owners, no grants).

    Raises :class:`BackupSourceError` naming pg_restore's error; the first error stops it.
    """
    # --enable-row-security for the same reason as pg_dump: restoring refreshes the marts' materialized
    # views, which read FORCEd row-security tables.
    command = [pg_binary("pg_restore"), "--no-password", "--no-owner", "--no-privileges", "--exit-on-error",
               "--no-publications", "--no-subscriptions", "--enable-row-security",
               f"--dbname={dbname}"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=libpq_env(conn_id, dbname))
    try:
        try:
            for piece in pieces:
                process.stdin.write(piece)
        except BrokenPipeError:
            pass  # pg_restore stopped early; its exit status and stderr say why
        finally:
            try:
                process.stdin.close()
            except BrokenPipeError:
                pass
        if process.wait() != 0:
            raise BackupSourceError(f"pg_restore into {dbname} failed: {_stderr_tail(process)}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


def table_stats(cursor) -> dict[str, dict]:
    """Row count and an order-independent content checksum of every user table, in the
    cursor's transaction (use the dump's snapshot). The checksum sums a 64-bit slice of each row's
    MD5 (a reconciliation check, not a security one)."""
    cursor.execute(load_sql("cluster/queries/backup/user_tables.sql"))
    stats = {}
    for schema, table in cursor.fetchall():
        cursor.execute(sql.SQL(load_sql("cluster/queries/backup/table_stats.sql")).format(
            table=sql.Identifier(schema, table)))
        count, checksum = cursor.fetchone()
        stats[f"{schema}.{table}"] = {"rows": count, "checksum": str(checksum)}
    return stats


def mongo_export(database) -> tuple[Iterator[bytes], dict[str, dict]]:
    """BSON stream of every collection (a marker document with its indexes, then its documents as
    stored), and the stats dict it fills while streaming: documents and a checksum per collection."""
    from bson import encode
    from bson.codec_options import CodecOptions
    from bson.raw_bson import RawBSONDocument

    stats: dict[str, dict] = {}
    options = CodecOptions(document_class=RawBSONDocument)

    def pieces() -> Iterator[bytes]:
        for name in sorted(database.list_collection_names()):
            collection = database.get_collection(name, codec_options=options)
            indexes = [{"keys": list(map(list, spec["key"])), "unique": bool(spec.get("unique", False)),
                        "name": index_name} for index_name, spec in collection.index_information().items()
                       if index_name != "_id_"]
            yield encode({MONGO_MARKER: name, "indexes": indexes})
            count, checksum, batch = 0, 0, []
            for document in collection.find({}, sort=[("_id", 1)]):
                raw = document.raw
                count += 1
                checksum = (checksum + _doc_hash(raw)) % (1 << 64)
                batch.append(raw)
                if len(batch) >= 1000:
                    yield b"".join(batch)
                    batch = []
            if batch:
                yield b"".join(batch)
            stats[name] = {"rows": count, "checksum": str(checksum)}

    return pieces(), stats


def _doc_hash(raw: bytes) -> int:
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big")


def mongo_stats(database) -> dict[str, dict]:
    from bson.codec_options import CodecOptions
    from bson.raw_bson import RawBSONDocument

    stats = {}
    options = CodecOptions(document_class=RawBSONDocument)
    for name in sorted(database.list_collection_names()):
        count, checksum = 0, 0
        for document in database.get_collection(name, codec_options=options).find({}):
            count += 1
            checksum = (checksum + _doc_hash(document.raw)) % (1 << 64)
        stats[name] = {"rows": count, "checksum": str(checksum)}
    return stats


def mongo_import(database, pieces: Iterable[bytes]) -> None:
    """Load a :func:`mongo_export` stream into ``database`` (its collections are dropped first)."""
    from bson import decode_all
    from bson.codec_options import CodecOptions
    from bson.raw_bson import RawBSONDocument

    options = CodecOptions(document_class=RawBSONDocument)
    buffer = bytearray()
    collection, batch = None, []

    def flush() -> None:
        if collection is not None and batch:
            collection.insert_many(batch, ordered=False)
            batch.clear()

    for piece in pieces:
        buffer += piece
        offset = 0
        while len(buffer) - offset >= 4:
            size = int.from_bytes(buffer[offset:offset + 4], "little")
            if size < 5:
                raise BackupSourceError("Mongo export stream is corrupted (impossible document size)")
            if len(buffer) - offset < size:
                break
            (document,) = decode_all(bytes(buffer[offset:offset + size]), options)
            offset += size
            if MONGO_MARKER in document:
                flush()
                name = document[MONGO_MARKER]
                database.drop_collection(name)
                # Created explicitly: a collection without documents or indexes must exist after a restore too.
                database.create_collection(name)
                collection = database.get_collection(name, codec_options=options)
                for index in document["indexes"]:
                    collection.create_index([tuple(key) for key in index["keys"]], unique=index["unique"],
                                            name=index["name"])
                continue
            if collection is None:
                raise BackupSourceError("Mongo export stream has documents before any collection marker")
            batch.append(document)
            if len(batch) >= 1000:
                flush()
        del buffer[:offset]
    if buffer:
        raise BackupSourceError("Mongo export stream ends inside a document (truncated)")
    flush()
