"""Decoder for PostgreSQL's ``pgoutput`` logical replication messages (protocol versions 1 and 2).

Format
------
Every message is one ``bytes`` payload whose first byte names its type; integers are big-endian,
strings are NUL-terminated UTF-8. A decoded transaction arrives as::

    B(final_lsn, commit_time, xid)  [O origin]  (R relation | Y type | I | U | D | T | M)*
    C(flags, commit_lsn, end_lsn, commit_time)

* ``R`` (relation) is sent before the first change of a relation in a session and again whenever
  its definition changes (e.g. ``ALTER TABLE ... ADD COLUMN``), always *before* the change that
  needs it. The decoder caches it by relation OID; changes name only the OID.
* ``I``/``U``/``D`` carry TupleData: per column ``n`` (NULL), ``u`` (unchanged TOASTed value, not
  sent), ``t`` (text, the type output function's text) or ``b`` (binary, only with the ``binary``
  option, which we do not use). ``U`` carries an old tuple only when a replica-identity column
  changed (``K``: key columns only, the others NULL) or the table has ``REPLICA IDENTITY FULL`` (``O``:
  the whole old row); ``D`` always carries ``K`` or ``O``.
* ``T`` (truncate) names several relation OIDs with ``cascade``/``restart identity`` flags.
* ``M`` is a ``pg_logical_emit_message`` payload (requires the ``messages`` option). A
  transactional one belongs to its transaction; a non-transactional one (what we use as a heartbeat)
  arrives on its own, outside Begin/Commit.
* Streaming of in-progress transactions (protocol 2 ``S``/``E``/``c``/``A``) and two-phase
  messages are rejected with :class:`DecodeError`: the slot is used without ``streaming``.

LSNs: which one is recorded where
---------------------------------
* ``Begin.final_lsn`` equals ``Commit.commit_lsn``: the WAL position where the commit record
  *starts*. Because it is known at Begin, every :class:`RawChange` carries it as ``commit_lsn``.
* ``Commit.end_lsn`` is the position just past the commit record; it is what a consumer reports
  back to the slot (``flush_lsn``) once the whole transaction is durable in every sink, so the
  server may recycle WAL and will not resend that transaction.
* The ``wal_start_lsn`` passed to :meth:`PgOutputDecoder.feed` (the XLogData header's WAL start,
  or the ``lsn`` column of ``pg_logical_slot_*_binary_changes``) is kept, for the Begin, as
  ``Transaction.begin_lsn``, for diagnostics only. For a change it is a WAL position inside the
  transaction, *not* monotonic across transactions (transactions interleave in WAL but are
  emitted in commit order); for a Commit the server reports ``end_lsn``.

Why ``(commit_lsn, index_in_txn)`` is the sinks' exactly-once position
--------------------------------------------------------------------
Logical decoding emits whole transactions in commit order and commit LSNs strictly increase, so
the pair (commit LSN, 0-based ordinal of the change within its transaction) is unique per change
and totally ordered in apply order. After a restart the slot replays from its confirmed flush
position, which may be behind what a sink already applied; a sink that stores the highest applied
pair in the same database transaction as the data skips every change whose pair is not greater,
and so applies each change exactly once without coordinating with the other sinks.

Unchanged TOAST
---------------
An ``UPDATE`` that does not modify a TOASTed (large, out-of-line) column does not send it; the
column's value in ``RawChange.new`` is the :data:`UNCHANGED_TOAST` sentinel. Sinks must treat it as
"keep the value already stored": leave the column out of the UPDATE's SET list (or merge with the
previously stored row). It never appears in inserts, and it must never be written as a value
(it refuses ``bool()`` so that a careless truth test fails loudly instead of acting like NULL).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from paydata.speedups import ACCELERATOR

__all__ = [
    "UNCHANGED_TOAST",
    "Begin",
    "Commit",
    "DecodeError",
    "Delete",
    "Insert",
    "LogicalMessage",
    "Message",
    "Origin",
    "PgOutputDecoder",
    "RawChange",
    "Relation",
    "RelationColumn",
    "Transaction",
    "Truncate",
    "TypeMessage",
    "Update",
    "decode_message",
    "format_lsn",
    "parse_lsn",
]


class DecodeError(ValueError):
    """A payload is malformed, out of protocol order, unsupported, or references an unknown relation."""


class _UnchangedToast:
    """Marker type of :data:`UNCHANGED_TOAST`; there is exactly one instance."""

    __slots__ = ()
    _instance: _UnchangedToast | None = None

    def __new__(cls) -> _UnchangedToast:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"

    def __bool__(self) -> bool:
        # A sentinel that is falsy would be silently confused with NULL/empty in sink code.
        raise TypeError("UNCHANGED_TOAST has no truth value; compare with 'is UNCHANGED_TOAST'")

    def __reduce__(self) -> str:
        return "UNCHANGED_TOAST"


UNCHANGED_TOAST = _UnchangedToast()
"""Value of a column whose TOASTed value the update did not change and pgoutput did not send."""


# ---------------------------------------------------------------------------------------------
# LSN helpers


def parse_lsn(text: str) -> int:
    """Parse ``'16/B374D848'`` (as ``pg_lsn`` prints) into an integer; raise ValueError if malformed."""
    high, sep, low = text.partition("/")
    if not sep or not (1 <= len(high) <= 8 and 1 <= len(low) <= 8):
        raise ValueError(f"malformed LSN {text!r}: expected 'XXXXXXXX/XXXXXXXX' hex")
    try:
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        raise ValueError(f"malformed LSN {text!r}: expected 'XXXXXXXX/XXXXXXXX' hex") from None


def format_lsn(lsn: int) -> str:
    """Format an integer LSN the way PostgreSQL prints ``pg_lsn`` (``'16/B374D848'``)."""
    if not 0 <= lsn < 1 << 64:
        raise ValueError(f"LSN {lsn} is outside the unsigned 64-bit range")
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


# ---------------------------------------------------------------------------------------------
# Raw messages, one dataclass per pgoutput message type

TupleValue = str | bytes | None | _UnchangedToast
"""One TupleData column: ``None`` (NULL), :data:`UNCHANGED_TOAST`, ``str`` (text) or ``bytes`` (binary)."""

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _pg_time(micros: int) -> datetime:
    return _PG_EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    commit_time: datetime
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True, slots=True)
class Origin:
    origin_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class RelationColumn:
    name: str
    type_oid: int
    type_modifier: int
    is_key: bool


@dataclass(frozen=True, slots=True)
class Relation:
    relation_id: int
    namespace: str
    name: str
    replica_identity: str  # 'd' default, 'n' nothing, 'f' full, 'i' index
    columns: tuple[RelationColumn, ...]


@dataclass(frozen=True, slots=True)
class TypeMessage:
    type_oid: int
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    relation_id: int
    new: tuple[TupleValue, ...]


@dataclass(frozen=True, slots=True)
class Update:
    relation_id: int
    old_kind: Literal["K", "O"] | None
    old: tuple[TupleValue, ...] | None
    new: tuple[TupleValue, ...]


@dataclass(frozen=True, slots=True)
class Delete:
    relation_id: int
    old_kind: Literal["K", "O"]
    old: tuple[TupleValue, ...]


@dataclass(frozen=True, slots=True)
class Truncate:
    relation_ids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message = Begin | Commit | Origin | Relation | TypeMessage | Insert | Update | Delete | Truncate | LogicalMessage

_INT16 = struct.Struct(">h").unpack_from
_INT32 = struct.Struct(">i").unpack_from
_UINT32 = struct.Struct(">I").unpack_from
_BEGIN = struct.Struct(">QqI").unpack_from
_COMMIT = struct.Struct(">BQQq").unpack_from
_UINT64 = struct.Struct(">Q").unpack_from
_REL_HEADER = struct.Struct(">Bh").unpack_from
_COLUMN_TAIL = struct.Struct(">Ii").unpack_from
_TRUNCATE_HEADER = struct.Struct(">iB").unpack_from
_MESSAGE_HEADER = struct.Struct(">BQ").unpack_from

_TRUNCATE_CASCADE = 1
_TRUNCATE_RESTART_IDENTITY = 2

_K, _O, _NEW = ord("K"), ord("O"), ord("N")
_INSERT, _UPDATE = ord("I"), ord("U")
_ROW_TAGS = frozenset({b"I", b"U", b"D"})


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(b"\0", pos)
    return buf[pos:end].decode(), end + 1


def _tuple(
    buf: bytes, pos: int, _int16: Any = _INT16, _int32: Any = _INT32, _unchanged: Any = UNCHANGED_TOAST
) -> tuple[tuple[TupleValue, ...], int]:
    # Hot path: literal byte codes and default-argument bindings avoid global lookups per column.
    (ncols,) = _int16(buf, pos)
    pos += 2
    values: list[TupleValue] = []
    append = values.append
    size = len(buf)
    for _ in range(ncols):
        kind = buf[pos]
        if kind == 116:  # 't'
            (length,) = _int32(buf, pos + 1)
            pos += 5
            end = pos + length
            if length < 0 or end > size:
                raise DecodeError(f"column value of {length} bytes overruns the {size}-byte payload")
            append(buf[pos:end].decode())
            pos = end
        elif kind == 110:  # 'n'
            append(None)
            pos += 1
        elif kind == 117:  # 'u'
            append(_unchanged)
            pos += 1
        elif kind == 98:  # 'b'
            (length,) = _int32(buf, pos + 1)
            pos += 5
            end = pos + length
            if length < 0 or end > size:
                raise DecodeError(f"column value of {length} bytes overruns the {size}-byte payload")
            append(buf[pos:end])
            pos = end
        else:
            raise DecodeError(f"unknown TupleData column kind {kind!r} at offset {pos}")
    return tuple(values), pos


_python_tuple = _tuple


if ACCELERATOR is not None:
    ACCELERATOR.configure(UNCHANGED_TOAST, DecodeError)
    _tuple = ACCELERATOR.tuple_data  # noqa: F811 (the C loop replaces the Python one where it is built)
ACCELERATED = ACCELERATOR is not None
"""Whether TupleData is decoded by the C module (:mod:`paydata.speedups`) rather than in Python."""


def _begin(buf: bytes) -> tuple[Begin, int]:
    final_lsn, micros, xid = _BEGIN(buf, 1)
    return Begin(final_lsn, _pg_time(micros), xid), 21


def _commit(buf: bytes) -> tuple[Commit, int]:
    flags, commit_lsn, end_lsn, micros = _COMMIT(buf, 1)
    return Commit(flags, commit_lsn, end_lsn, _pg_time(micros)), 26


def _origin(buf: bytes) -> tuple[Origin, int]:
    (origin_lsn,) = _UINT64(buf, 1)
    name, pos = _string(buf, 9)
    return Origin(origin_lsn, name), pos


def _relation(buf: bytes) -> tuple[Relation, int]:
    (relation_id,) = _UINT32(buf, 1)
    namespace, pos = _string(buf, 5)
    name, pos = _string(buf, pos)
    identity, ncols = _REL_HEADER(buf, pos)
    pos += 3
    columns = []
    for _ in range(ncols):
        flags = buf[pos]
        column_name, pos = _string(buf, pos + 1)
        type_oid, type_modifier = _COLUMN_TAIL(buf, pos)
        pos += 8
        columns.append(RelationColumn(column_name, type_oid, type_modifier, bool(flags & 1)))
    return Relation(relation_id, namespace, name, chr(identity), tuple(columns)), pos


def _type(buf: bytes) -> tuple[TypeMessage, int]:
    (type_oid,) = _UINT32(buf, 1)
    namespace, pos = _string(buf, 5)
    name, pos = _string(buf, pos)
    return TypeMessage(type_oid, namespace, name), pos


def _row_parts(buf: bytes) -> tuple[str, Any, Any, Literal["K", "O"] | None, int]:
    """``(kind, new, old, old_kind, end)`` of an Insert/Update/Delete payload (relation id not read).

    Shared by the message objects below and :meth:`PgOutputDecoder._raw_row`, which skips them.
    """
    tag, marker = buf[0], buf[5]
    if tag == _INSERT:
        if marker != _NEW:
            raise DecodeError(f"insert: expected 'N' before the new tuple, got {bytes([marker])!r}")
        new, end = _tuple(buf, 6)
        return "insert", new, None, None, end
    if tag == _UPDATE:
        old = None
        old_kind: Literal["K", "O"] | None = None
        pos = 6
        if marker == _K or marker == _O:
            old_kind = "K" if marker == _K else "O"
            old, pos = _tuple(buf, 6)
            marker = buf[pos]
            pos += 1
        if marker != _NEW:
            raise DecodeError(f"update: expected 'K', 'O' or 'N', got {bytes([marker])!r}")
        new, end = _tuple(buf, pos)
        return "update", new, old, old_kind, end
    if marker != _K and marker != _O:
        raise DecodeError(f"delete: expected 'K' or 'O', got {bytes([marker])!r}")
    old, end = _tuple(buf, 6)
    return "delete", None, old, "K" if marker == _K else "O", end


def _insert(buf: bytes) -> tuple[Insert, int]:
    (relation_id,) = _UINT32(buf, 1)
    _, new, _, _, end = _row_parts(buf)
    return Insert(relation_id, new), end


def _update(buf: bytes) -> tuple[Update, int]:
    (relation_id,) = _UINT32(buf, 1)
    _, new, old, old_kind, end = _row_parts(buf)
    return Update(relation_id, old_kind, old, new), end


def _delete(buf: bytes) -> tuple[Delete, int]:
    (relation_id,) = _UINT32(buf, 1)
    _, _, old, old_kind, end = _row_parts(buf)
    return Delete(relation_id, old_kind, old), end


def _truncate(buf: bytes) -> tuple[Truncate, int]:
    count, options = _TRUNCATE_HEADER(buf, 1)
    if count < 0:
        raise DecodeError(f"truncate: negative relation count {count}")
    if 6 + 4 * count > len(buf):
        raise DecodeError(f"truncate: {count} relation ids overrun the {len(buf)}-byte payload")
    relation_ids = struct.unpack_from(f">{count}I", buf, 6)
    return (
        Truncate(relation_ids, bool(options & _TRUNCATE_CASCADE), bool(options & _TRUNCATE_RESTART_IDENTITY)),
        6 + 4 * count,
    )


def _message(buf: bytes) -> tuple[LogicalMessage, int]:
    flags, lsn = _MESSAGE_HEADER(buf, 1)
    prefix, pos = _string(buf, 10)
    (length,) = _INT32(buf, pos)
    pos += 4
    end = pos + length
    if length < 0 or end > len(buf):
        raise DecodeError(f"message content of {length} bytes overruns the {len(buf)}-byte payload")
    return LogicalMessage(bool(flags & 1), lsn, prefix, buf[pos:end]), end


_PARSERS: dict[int, Callable[[bytes], tuple[Any, int]]] = {
    ord("B"): _begin,
    ord("C"): _commit,
    ord("O"): _origin,
    ord("R"): _relation,
    ord("Y"): _type,
    ord("I"): _insert,
    ord("U"): _update,
    ord("D"): _delete,
    ord("T"): _truncate,
    ord("M"): _message,
}

_UNSUPPORTED = {
    ord("S"): "stream start",
    ord("E"): "stream stop",
    ord("c"): "stream commit",
    ord("A"): "stream abort",
    ord("p"): "stream prepare",
    ord("b"): "begin prepare",
    ord("P"): "prepare",
    ord("K"): "commit prepared",
    ord("r"): "rollback prepared",
}


def decode_message(payload: bytes | bytearray | memoryview) -> Message:
    """Decode one pgoutput message (no state; see :class:`PgOutputDecoder` for the stream).

    Raises :class:`DecodeError` for an empty, truncated or over-long payload, an unknown
    message type, or streaming/two-phase messages (options we never enable).
    """
    buf = payload if type(payload) is bytes else bytes(payload)
    if not buf:
        raise DecodeError("empty pgoutput payload")
    parser = _PARSERS.get(buf[0])
    if parser is None:
        unsupported = _UNSUPPORTED.get(buf[0])
        if unsupported is not None:
            raise DecodeError(
                f"{unsupported} message ({chr(buf[0])!r}) is not supported: "
                "use the slot without the 'streaming' and 'two_phase' options"
            )
        raise DecodeError(f"unknown pgoutput message type {buf[:1]!r}")
    try:
        message, end = parser(buf)
    except (struct.error, IndexError, ValueError) as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(
            f"truncated or corrupt {chr(buf[0])!r} message ({len(buf)} bytes): {exc}"
        ) from None
    if end != len(buf):
        raise DecodeError(
            f"{chr(buf[0])!r} message has {len(buf) - end} unexpected trailing bytes after offset {end}"
        )
    return message


# ---------------------------------------------------------------------------------------------
# Typed changes and transactions


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
