"""The parsed path: pgoutput changes as Python values, captured value by value.

Production decodes rows without parsing them (:class:`paydata.cdc.pgoutput.PgOutputDecoder`
yields :class:`~paydata.cdc.pgoutput.RawChange`) and captures them as text
(:meth:`paydata.cdc.manifest.Manifest.capture_raw`). This module is the slow, obvious version the
tests hold that path to: :class:`ParsedDecoder` turns every row into a dict of Python values
(:func:`paydata.cdc.types.parser_for` per column) and :func:`capture_parsed` applies the manifest
to one such change. Both must describe every change exactly as the production path does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from paydata.cdc.manifest import SOURCE_SCHEMA, Manifest
from paydata.cdc.model import CapturedChange, Position
from paydata.cdc.pgoutput import (
    UNCHANGED_TOAST,
    ChangeKind,
    DecodeError,
    Insert,
    PgOutputDecoder,
    Transaction,
    Truncate,
    TupleValue,
    Update,
)
from paydata.cdc.types import PARSE_ERRORS, conversion_error, parser_for


@dataclass(slots=True)
class Change:
    """One row change (or one truncated table), converted to Python values.

    ``new``: the full new row for insert/update (``UNCHANGED_TOAST`` for unsent TOASTed columns),
    ``None`` for delete/truncate. ``old``: the old key columns or the whole old row when the server
    sent it, else ``None``. ``key``: the replica-identity columns identifying the row (from ``old``
    when present, else from ``new``); empty for truncate. ``lsn`` is the message's WAL start.
    """

    kind: ChangeKind
    schema: str
    table: str
    commit_lsn: int
    xid: int
    commit_time: datetime
    index_in_txn: int
    new: dict[str, Any] | None
    old: dict[str, Any] | None
    key: dict[str, Any]
    lsn: int = 0
    truncate_cascade: bool = False
    truncate_restart_identity: bool = False

    @property
    def position(self) -> tuple[int, int]:
        return (self.commit_lsn, self.index_in_txn)


class ParsedDecoder(PgOutputDecoder):
    """:class:`PgOutputDecoder` whose transactions hold :class:`Change` objects with parsed values.

    Also raises :class:`DecodeError` for a binary-format column or a text value that does not
    parse as its column's type.
    """

    _raw_rows = False

    def _row(self, relation_id: int, values: tuple[TupleValue, ...]) -> dict[str, Any]:
        cached = self._cached(relation_id)
        columns = cached.relation.columns
        names = cached.names
        if len(values) != len(names):
            raise DecodeError(f"{cached.schema}.{cached.relation.name}: tuple has {len(values)} columns, "
                              f"relation has {len(names)}")
        row: dict[str, Any] = {}
        for column, value in zip(columns, values, strict=True):
            if type(value) is str:
                parse = parser_for(column.type_oid)
                try:
                    row[column.name] = value if parse is None else parse(value)
                except PARSE_ERRORS as exc:
                    failed = conversion_error(column.type_oid, value, exc)
                    raise DecodeError(f"{cached.schema}.{cached.relation.name}.{column.name}: {failed}") from failed
            elif value is None or value is UNCHANGED_TOAST:
                row[column.name] = value
            else:
                raise DecodeError(f"{cached.schema}.{cached.relation.name}.{column.name}: binary column values are "
                                  "not supported (do not set the 'binary' option)")
        return row

    def _apply_message(self, txn: Transaction, message: Any, lsn: int) -> None:
        changes = txn.changes
        if type(message) is Truncate:
            for relation_id in message.relation_ids:
                cached = self._cached(relation_id)
                changes.append(Change("truncate", cached.schema, cached.relation.name, txn.commit_lsn, txn.xid,
                                      txn.commit_time, len(changes), None, None, {}, lsn,
                                      message.cascade, message.restart_identity))
            return
        cached = self._cached(message.relation_id)
        key_names = cached.key_names
        new = old = None
        if type(message) is Insert or type(message) is Update:
            new = self._row(message.relation_id, message.new)
        if getattr(message, "old", None) is not None:
            old = self._row(message.relation_id, message.old)
            if message.old_kind == "K":
                old = {k: old[k] for k in key_names}
        kind = "insert" if type(message) is Insert else "update" if type(message) is Update else "delete"
        source = new if old is None else old
        changes.append(Change(kind, cached.schema, cached.relation.name, txn.commit_lsn, txn.xid, txn.commit_time,
                              len(changes), new, old, {k: source[k] for k in key_names}, lsn))


def capture_parsed(manifest: Manifest, change: Change) -> list[CapturedChange]:
    """The :class:`CapturedChange` list for one parsed change: the rules of ``Manifest.capture_raw``.

    An update that changes the key becomes a delete of the old key followed by an update of the
    new one (carrying ``moved_from``), both at the change's position. Raises
    :class:`~paydata.cdc.manifest.SchemaDriftError` naming every manifest column the change lacks.
    """
    table = manifest.tables.get(change.table) if change.schema == SOURCE_SCHEMA else None
    if table is None:
        return []
    position = Position(change.commit_lsn, change.index_in_txn)
    if change.kind == "truncate":
        return [CapturedChange(manifest.source, change.table, "truncate", position, change.commit_time, {}, None)]
    if change.kind == "delete":
        old = change.old or {}
        manifest._check_columns(table, old, ())
        return [CapturedChange(manifest.source, change.table, "delete", position, change.commit_time,
                               manifest._key(table, old), None)]
    new = change.new or {}
    manifest._check_columns(table, new, table.columns)
    captured = manifest._capture_checked_row(table, new, change.kind, position, change.commit_time)
    if change.kind == "update" and change.old is not None:
        old_key = manifest._key(table, change.old)
        if old_key != captured.key:
            deleted = CapturedChange(manifest.source, change.table, "delete", position, change.commit_time,
                                     old_key, None)
            captured.moved_from = old_key
            return [deleted, captured]
    return [captured]
