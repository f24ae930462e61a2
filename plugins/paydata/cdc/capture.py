"""Source-side primitives of capture: catalog, publication, slot, exported snapshot, slot stream.

Everything here talks to one source database and nothing else; :mod:`paydata.cdc.engine` puts the
pieces together. Statements live in ``include/sql/sources/queries/cdc``.

Privileges: the capture role (``paydata_cdc``: REPLICATION, SELECT on the captured tables) reads
the catalog, creates/streams/drops the slot and reads snapshots. Publications can only be
created or altered by the owner of the tables, so those statements run on the owner's connection.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg2 import errors as pg_errors
from psycopg2 import sql

from paydata.cdc.manifest import SOURCE_SCHEMA, SourceCatalog, SourceColumn
from paydata.cdc.pgoutput import parse_lsn
from paydata.cdc.types import parser_for
from paydata.cdc.wire import ReplicationStream, start_logical_stream
from paydata.sql import load_sql

STATE_VERSION = 1


class SlotBusyError(RuntimeError):
    """The slot stayed in use by another backend for longer than the wait allowed."""


def statement(name: str, **identifiers: str | Sequence[str]) -> sql.Composed:
    """``include/sql/sources/queries/cdc/<name>.sql`` with ``{placeholders}`` bound as identifiers.

    A string binds one identifier; a sequence binds a comma-separated list of ``public.<name>``
    (tables) or plain identifiers (columns), as the placeholder's name says.
    """
    bound: dict[str, sql.Composable] = {}
    for key, value in identifiers.items():
        if isinstance(value, str):
            bound[key] = sql.Identifier(value)
        elif key == "tables":
            bound[key] = sql.SQL(", ").join(sql.Identifier(SOURCE_SCHEMA, name) for name in value)
        else:
            bound[key] = sql.SQL(", ").join(sql.Identifier(name) for name in value)
    return sql.SQL(load_sql(f"sources/queries/cdc/{name}.sql")).format(**bound)


# -- catalog ---------------------------------------------------------------------------------------


def read_catalog(conn, tables: Sequence[str]) -> dict[str, dict[str, SourceColumn]]:
    """Current columns (name, type OID, ``format_type``) of ``tables`` in schema public."""
    catalog: dict[str, dict[str, SourceColumn]] = {}
    with conn.cursor() as cursor:
        cursor.execute(load_sql("sources/queries/cdc/catalog_columns.sql"), {"tables": list(tables)})
        for table, column, type_oid, sql_type in cursor.fetchall():
            catalog.setdefault(table, {})[column] = SourceColumn(column, type_oid, sql_type)
    conn.commit()
    return catalog


# -- publication and its snapshot state -------------------------------------------------------------


@dataclass(frozen=True)
class PublicationState:
    """What the engine recorded on the publication: the slot it snapshotted for, and which tables."""

    exists: bool
    slot: str | None = None
    tables: frozenset[str] = frozenset()

    @property
    def snapshot_complete(self) -> bool:
        return self.slot is not None


def read_publication_state(conn, publication: str) -> PublicationState:
    with conn.cursor() as cursor:
        cursor.execute(load_sql("sources/queries/cdc/publication_state.sql"), {"publication": publication})
        row = cursor.fetchone()
    conn.commit()
    if row is None:
        return PublicationState(exists=False)
    if not row[0]:
        return PublicationState(exists=True)
    try:
        state = json.loads(row[0])
        return PublicationState(True, state["slot"], frozenset(state["tables"]))
    except (ValueError, KeyError, TypeError):
        # A comment someone else wrote: treat as "no snapshot recorded", which forces a fresh one.
        return PublicationState(exists=True)


def write_publication_state(owner_conn, publication: str, slot: str | None, tables: Sequence[str]) -> None:
    """Record (or with ``slot=None`` clear) the completed snapshot; committed before returning."""
    state = None if slot is None else json.dumps({"version": STATE_VERSION, "slot": slot, "tables": sorted(tables)})
    with owner_conn.cursor() as cursor:
        cursor.execute(statement("set_publication_state", publication=publication), {"state": state})
    owner_conn.commit()


def publication_tables(conn, publication: str) -> set[str]:
    with conn.cursor() as cursor:
        cursor.execute(load_sql("sources/queries/cdc/publication_tables.sql"), {"publication": publication})
        tables = {row[0] for row in cursor.fetchall()}
    conn.commit()
    return tables


def ensure_publication(owner_conn, publication: str, tables: Sequence[str], *, exact: bool) -> None:
    """Create the publication ``FOR TABLE tables``, or make it include them.

    ``exact`` replaces its table list (``SET TABLE``: only before a full snapshot, when no slot
    depends on the old list); otherwise missing tables are added (``ADD TABLE``).
    """
    state = read_publication_state(owner_conn, publication)
    with owner_conn.cursor() as cursor:
        if not state.exists:
            cursor.execute(statement("create_publication", publication=publication, tables=list(tables)))
        elif exact:
            cursor.execute(statement("set_publication_tables", publication=publication, tables=list(tables)))
        else:
            missing = sorted(set(tables) - publication_tables(owner_conn, publication))
            if missing:
                cursor.execute(statement("add_publication_tables", publication=publication, tables=missing))
    owner_conn.commit()


# -- slot ----------------------------------------------------------------------------------------------


def slot_row(conn, slot: str) -> dict[str, Any] | None:
    """The slot's row of ``pg_replication_slots`` (plus current WAL LSN and lag bytes), or None."""
    with conn.cursor() as cursor:
        cursor.execute(load_sql("sources/queries/cdc/slot_state.sql"), {"slot": slot})
        row = cursor.fetchone()
        names = [d.name for d in cursor.description]
    conn.commit()
    return None if row is None else dict(zip(names, row, strict=True))


def _slot_busy(wait_seconds: float, exc: Exception) -> SlotBusyError:
    return SlotBusyError(
        f"replication slot is still in use after {wait_seconds:g}s ({(exc.pgerror or str(exc)).strip()}); "
        "another consumer is running: wait for it, or terminate its backend"
    )


def with_slot_retry(conn, action: Callable[[], Any], *, wait_seconds: float) -> Any:
    """Run ``action`` on ``conn``; while the slot is active in another backend, roll back and retry.

    A consumer killed mid-read leaves its backend holding the slot until the server notices the
    closed socket; waiting for that is the normal recovery. Raises :class:`SlotBusyError` after
    ``wait_seconds``.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return action()
        except pg_errors.ObjectInUse as exc:
            conn.rollback()
            if time.monotonic() >= deadline:
                raise _slot_busy(wait_seconds, exc) from exc
            time.sleep(0.2)


def drop_slot(conn, slot: str, *, wait_seconds: float = 30.0) -> bool:
    """Drop the slot if it exists; return whether it existed."""
    if slot_row(conn, slot) is None:
        return False

    def _drop() -> None:
        try:
            with conn.cursor() as cursor:
                cursor.execute(load_sql("sources/queries/cdc/drop_slot.sql"), {"slot": slot})
        except pg_errors.UndefinedObject:
            # A slot still being created when its creator died disappears once its backend exits.
            conn.rollback()
            return
        conn.commit()

    with_slot_retry(conn, _drop, wait_seconds=wait_seconds)
    return True


def emit_heartbeat(conn, content: str) -> int:
    """Write a non-transactional logical message; return its LSN."""
    with conn.cursor() as cursor:
        cursor.execute(load_sql("sources/queries/cdc/heartbeat.sql"), {"content": content})
        (lsn,) = cursor.fetchone()
    conn.commit()
    return parse_lsn(lsn)


@dataclass
class ExportedSnapshot:
    """A slot just created on a replication connection, with the snapshot it exported.

    The snapshot can be imported (``SET TRANSACTION SNAPSHOT``) only while ``connection`` stays
    open and runs no other command; :meth:`close` ends it (and drops a temporary slot).
    """

    connection: Any
    slot: str
    consistent_point: int
    snapshot_name: str

    def close(self) -> None:
        if not self.connection.closed:
            self.connection.close()


def create_slot_with_snapshot(replication_connect: Callable[[], Any], slot: str, *, temporary: bool) -> ExportedSnapshot:
    """``CREATE_REPLICATION_SLOT <slot> [TEMPORARY] LOGICAL pgoutput EXPORT_SNAPSHOT``.

    ``replication_connect`` must return a ``LogicalReplicationConnection``. psycopg2 sends the
    command as a simple query and returns its row (slot_name, consistent_point, snapshot_name,
    output_plugin); its own ``create_replication_slot`` helper cannot ask for the snapshot.
    """
    conn = replication_connect()
    try:
        cursor = conn.cursor()
        name = "create_temporary_slot" if temporary else "create_slot"
        cursor.execute(statement(name, slot=slot).as_string(conn))
        _, consistent_point, snapshot_name, _ = cursor.fetchone()
    except BaseException:
        conn.close()
        raise
    return ExportedSnapshot(conn, slot, parse_lsn(consistent_point), snapshot_name)


# -- snapshot reads (COPY text format) ------------------------------------------------------------------

_COPY_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}
_COPY_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))", re.DOTALL)


def _unescape_match(match: re.Match) -> str:
    octal, hexadecimal, other = match.groups()
    if octal is not None:
        return chr(int(octal, 8))
    if hexadecimal is not None:
        return chr(int(hexadecimal, 16))
    return _COPY_ESCAPES.get(other, other)


def copy_text_field(text: str) -> str | None:
    """One field of COPY's text format: ``\\N`` is NULL, backslash escapes are decoded."""
    if text == "\\N":
        return None
    return _COPY_ESCAPE.sub(_unescape_match, text) if "\\" in text else text


class CopyRowReader:
    """A file-like sink for ``cursor.copy_expert``: parses COPY text rows, hands them on in chunks.

    ``on_rows`` receives lists of at most ``chunk_rows`` dicts (column -> value converted with the
    same text parsers the pgoutput decoder uses, so a snapshot row equals a streamed one). Memory
    holds one chunk plus one partial line.
    """

    def __init__(
        self,
        columns: Sequence[SourceColumn],
        on_rows: Callable[[list[dict[str, Any]]], None],
        chunk_rows: int,
    ) -> None:
        self._names = [column.name for column in columns]
        self._parsers = [parser_for(column.type_oid) for column in columns]
        self._on_rows = on_rows
        self._chunk_rows = chunk_rows
        self._pending = ""
        self._rows: list[dict[str, Any]] = []
        self.rows_read = 0

    def write(self, data: str | bytes) -> int:
        text = data.decode() if isinstance(data, bytes) else data
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._add(line)
        return len(data)

    def _add(self, line: str) -> None:
        fields = line.split("\t")
        if len(fields) != len(self._names):
            raise ValueError(f"COPY row has {len(fields)} fields, expected {len(self._names)}")
        row: dict[str, Any] = {}
        for name, parse, raw in zip(self._names, self._parsers, fields, strict=True):
            value = copy_text_field(raw)
            row[name] = value if value is None or parse is None else parse(value)
        self._rows.append(row)
        self.rows_read += 1
        if len(self._rows) >= self._chunk_rows:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            raise ValueError("COPY output ended in the middle of a row")
        if self._rows:
            rows, self._rows = self._rows, []
            self._on_rows(rows)


def copy_snapshot_table(
    conn,
    snapshot_name: str,
    table: str,
    columns: Sequence[SourceColumn],
    on_rows: Callable[[list[dict[str, Any]]], None],
    *,
    chunk_rows: int,
) -> int:
    """Read ``columns`` of ``table`` as of the exported snapshot; return the row count.

    ``conn`` must be idle; it runs one REPEATABLE READ transaction importing ``snapshot_name``.
    Only the named columns are read, so dropped (PII) columns never leave the source.
    """
    conn.rollback()
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    try:
        with conn.cursor() as cursor:
            cursor.execute(load_sql("sources/queries/cdc/set_transaction_snapshot.sql"), {"snapshot": snapshot_name})
            reader = CopyRowReader(columns, on_rows, chunk_rows)
            copy = sql.SQL(load_sql("sources/queries/cdc/copy_table.sql")).format(
                columns=sql.SQL(", ").join(sql.Identifier(c.name) for c in columns),
                table=sql.Identifier(SOURCE_SCHEMA, table),
            )
            cursor.copy_expert(copy.as_string(conn), reader)
            reader.flush()
        conn.commit()
    finally:
        conn.rollback()
        conn.set_session(isolation_level="DEFAULT", readonly=False)
    return reader.rows_read


# -- streaming reads -------------------------------------------------------------------------------------


def start_stream(
    stream_params: Callable[[], Mapping[str, Any]],
    slot: str,
    publication: str,
    start_lsn: int,
    *,
    wait_seconds: float,
) -> ReplicationStream:
    """Connect with ``stream_params()`` (psycopg2 keywords) and ``START_REPLICATION`` on ``slot``.

    pgoutput, protocol 1, heartbeat messages included (``messages``). ``start_lsn`` is the slot's
    confirmed position (the server never streams from before it). The server decodes the slot's
    WAL once, in order, and sends every transaction that commits after that position, in commit
    order, while the client works on what it already received. (A SQL-level peek or advance
    starts a new decoding session each time, re-reading WAL from ``restart_lsn``: through a backlog
    written in a burst that point barely moves, so the server work grows with batches x backlog.)

    The session runs on :mod:`paydata.cdc.wire`, whose reported position moves only when the
    engine confirms one. (psycopg2's replication cursor moves it on keepalives by a rule that
    pgoutput's Relation messages defeat; see :class:`paydata.cdc.wire.ReplicationStream`.)

    While another backend holds the slot ("is active for PID") the start is retried;
    :class:`SlotBusyError` after ``wait_seconds``. Other server errors (slot missing or
    invalidated) propagate.
    """
    deadline = time.monotonic() + wait_seconds
    options = {"proto_version": "1", "publication_names": publication, "messages": "true"}
    while True:
        try:
            return start_logical_stream(stream_params(), slot, start_lsn, options)
        except pg_errors.ObjectInUse as exc:
            if time.monotonic() >= deadline:
                raise _slot_busy(wait_seconds, exc) from exc
            time.sleep(0.2)


def wait_for_slot_release(conn, slot: str, backend_pid: int, *, timeout: float = 5.0) -> None:
    """Wait (up to ``timeout``) until ``backend_pid`` no longer holds the slot.

    A walsender handles its client's messages in order before it exits, so once it has released
    the slot, the last confirmed position is what ``pg_replication_slots`` shows.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = slot_row(conn, slot)
        if row is None or row["active_pid"] != backend_pid:
            return
        time.sleep(0.01)


def catalog_for(catalog: SourceCatalog, table: str, columns: Sequence[str]) -> list[SourceColumn]:
    return [catalog[table][column] for column in columns]
