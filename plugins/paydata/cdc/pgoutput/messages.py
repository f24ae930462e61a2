"""pgoutput messages: one dataclass per message type, :func:`decode_message`, TupleData, LSNs.

The wire format and what each LSN means are described in :mod:`paydata.cdc.pgoutput`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from paydata.speedups import ACCELERATOR


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
