"""The pgoutput stream decoder: committed transactions of :class:`RawChange` rows (values as sent).

See :mod:`paydata.cdc.pgoutput` for the format and the positions it records.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from paydata.cdc.pgoutput.messages import (
    _ROW_TAGS,
    _UINT32,
    Begin,
    Commit,
    DecodeError,
    Delete,
    Insert,
    LogicalMessage,
    Relation,
    Truncate,
    TupleValue,
    TypeMessage,
    Update,
    _row_parts,
    decode_message,
    format_lsn,
)

ChangeKind = Literal["insert", "update", "delete", "truncate"]


@dataclass(slots=True)
class RawChange:
    """One row change (or one truncated table) with its values as the server sent them.

    What :class:`PgOutputDecoder` produces: ``new``/``old`` are tuples in
    the relation's column order of ``str`` (the type's output text), ``None`` (NULL),
    :data:`UNCHANGED_TOAST` or ``bytes`` (binary format). Nothing is parsed: a consumer that writes
    the values back into PostgreSQL (COPY text) lets the server parse them, and one that needs
    Python values parses only the columns it uses. ``old_kind`` is ``'K'`` (key columns only, the
    others ``None``) or ``'O'`` (the whole old row) when ``old`` is present. ``relation`` is the
    definition in force for this change; a new Relation message makes a new object, so consumers
    may cache per-relation plans keyed by its identity.
    """

    kind: ChangeKind
    relation: Relation
    commit_lsn: int
    index_in_txn: int
    commit_time: datetime
    new: tuple[TupleValue, ...] | None
    old: tuple[TupleValue, ...] | None
    old_kind: str | None = None
    truncate_cascade: bool = False
    truncate_restart_identity: bool = False


@dataclass(slots=True)
class Transaction:
    """A committed transaction: its changes in order, plus any transactional logical messages."""

    xid: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime
    begin_lsn: int
    origin: str | None = None
    changes: list[RawChange] = field(default_factory=list)
    messages: list[LogicalMessage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _CachedRelation:
    relation: Relation
    schema: str
    names: tuple[str, ...]
    key_names: tuple[str, ...]
    type_oids: tuple[int, ...]


class PgOutputDecoder:
    """Stateful decoder of a pgoutput stream into committed :class:`Transaction` objects.

    Feed every payload of one replication connection, in order, to :meth:`feed`. Relation
    definitions are cached across transactions (a new connection re-sends them before use, so
    the cache may outlive a reconnect, but an open transaction may not: call :meth:`reset`).

    Transactions hold :class:`RawChange` objects: the values stay as sent (no type parsing, no
    per-column dict); whoever needs Python values parses the columns it uses
    (:meth:`paydata.cdc.manifest.Manifest.capture_raw`), and a sink writing into PostgreSQL lets the
    server parse them.

    Raises :class:`DecodeError` for malformed payloads, changes outside Begin..Commit, a Begin
    inside an open transaction, a Commit whose LSN differs from its Begin, a change naming a
    relation that was never described, or a tuple whose column count differs from its relation.
    """

    # Row messages are decoded straight into RawChange without a message object (the hot path).
    # A subclass that wants the message objects (a test oracle) sets this to False and overrides
    # _apply_message.
    _raw_rows = True

    def __init__(self) -> None:
        self._relations: dict[int, _CachedRelation] = {}
        self.types: dict[int, TypeMessage] = {}
        self._open: Transaction | None = None

    @property
    def in_transaction(self) -> bool:
        return self._open is not None

    def relation(self, relation_id: int) -> Relation:
        """The cached definition of ``relation_id``; DecodeError if never received."""
        return self._cached(relation_id).relation

    def reset(self) -> None:
        """Discard a partially received transaction (after a disconnect); keep the relation cache."""
        self._open = None

    def feed(
        self, payload: bytes | bytearray | memoryview, wal_start_lsn: int = 0
    ) -> list[Transaction | LogicalMessage]:
        """Decode one payload; return what it completed.

        Returns ``[transaction]`` when the payload is a Commit, ``[message]`` for a
        non-transactional logical message (e.g. a heartbeat), otherwise ``[]``.
        """
        current = self._open
        if self._raw_rows and current is not None:
            buf = payload if type(payload) is bytes else bytes(payload)
            if buf[:1] in _ROW_TAGS:
                self._raw_row(current, buf)
                return []
        message = decode_message(payload)
        kind = type(message)
        if kind is Insert or kind is Update or kind is Delete or kind is Truncate:
            if current is None:
                raise DecodeError(f"{kind.__name__} at {format_lsn(wal_start_lsn)} arrived outside a transaction")
            self._apply_message(current, message, wal_start_lsn)
            return []
        if kind is Begin:
            if current is not None:
                raise DecodeError(
                    f"Begin of xid {message.xid} while xid {current.xid} is still open (missing Commit)"
                )
            self._open = Transaction(
                xid=message.xid,
                commit_lsn=message.final_lsn,
                end_lsn=0,
                commit_time=message.commit_time,
                begin_lsn=wal_start_lsn,
            )
            return []
        if kind is Commit:
            if current is None:
                raise DecodeError(f"Commit at {format_lsn(message.commit_lsn)} without a Begin")
            if message.commit_lsn != current.commit_lsn:
                raise DecodeError(
                    f"Commit LSN {format_lsn(message.commit_lsn)} differs from its Begin's final LSN "
                    f"{format_lsn(current.commit_lsn)} (xid {current.xid})"
                )
            current.end_lsn = message.end_lsn
            current.commit_time = message.commit_time
            self._open = None
            return [current]
        if kind is Relation:
            self._cache_relation(message)
            return []
        if kind is TypeMessage:
            self.types[message.type_oid] = message
            return []
        if kind is LogicalMessage:
            if not message.transactional:
                return [message]
            if current is None:
                raise DecodeError(f"transactional message {message.prefix!r} arrived outside a transaction")
            current.messages.append(message)
            return []
        # Origin
        if current is None:
            raise DecodeError("Origin message arrived outside a transaction")
        current.origin = message.name
        return []

    def feed_all(
        self, payloads: Iterable[tuple[int, bytes | bytearray | memoryview]]
    ) -> list[Transaction | LogicalMessage]:
        """Feed ``(wal_start_lsn, payload)`` pairs in order; return everything they completed."""
        completed: list[Transaction | LogicalMessage] = []
        for wal_start_lsn, payload in payloads:
            completed.extend(self.feed(payload, wal_start_lsn))
        return completed

    # -- internals -------------------------------------------------------------------------------

    def _cache_relation(self, relation: Relation) -> None:
        columns = relation.columns
        self._relations[relation.relation_id] = _CachedRelation(
            relation=relation,
            schema=relation.namespace or "pg_catalog",
            names=tuple(c.name for c in columns),
            key_names=tuple(c.name for c in columns if c.is_key),
            type_oids=tuple(c.type_oid for c in columns),
        )

    def _cached(self, relation_id: int) -> _CachedRelation:
        cached = self._relations.get(relation_id)
        if cached is None:
            raise DecodeError(
                f"change for relation OID {relation_id} before any Relation message describing it"
            )
        return cached

    def _apply_message(self, txn: Transaction, message: Any, lsn: int) -> None:
        # Row messages never get here (feed hands them to _raw_row): only truncates.
        changes = txn.changes
        for relation_id in message.relation_ids:
            changes.append(
                RawChange(
                    "truncate", self._cached(relation_id).relation, txn.commit_lsn, len(changes),
                    txn.commit_time, None, None, None, message.cascade, message.restart_identity,
                )
            )

    def _raw_row(self, txn: Transaction, buf: bytes) -> None:
        """Insert/Update/Delete straight to a :class:`RawChange` (the hot path).

        The same parsing (:func:`_row_parts`) and checks as :func:`decode_message`, without the
        intermediate message object.
        """
        tag = buf[0]
        try:
            (relation_id,) = _UINT32(buf, 1)
            cached = self._relations.get(relation_id)
            if cached is None:
                self._cached(relation_id)  # raises
            kind, new, old, old_kind, end = _row_parts(buf)
        except (struct.error, IndexError, UnicodeDecodeError) as exc:
            raise DecodeError(f"truncated or corrupt {chr(tag)!r} message ({len(buf)} bytes): {exc}") from None
        if end != len(buf):
            raise DecodeError(f"{chr(tag)!r} message has {len(buf) - end} unexpected trailing bytes after offset {end}")
        count = len(cached.names)
        if (new is not None and len(new) != count) or (old is not None and len(old) != count):
            raise DecodeError(
                f"{cached.schema}.{cached.relation.name}: tuple has "
                f"{len(new) if new is not None and len(new) != count else len(old)} columns, relation has {count}"
            )
        changes = txn.changes
        changes.append(RawChange(kind, cached.relation, txn.commit_lsn, len(changes), txn.commit_time, new, old, old_kind))
