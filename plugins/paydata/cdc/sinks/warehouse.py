"""Warehouse staging sink: applies captured changes to ``staging.<source>_<table>`` mirror tables.

Layout (database ``warehouse``, schema ``staging``, created by :meth:`WarehouseSink.prepare`):

* a mirror per captured table with the captured columns plus ``_commit_lsn``, ``_index_in_txn``,
  ``_commit_time``, ``_is_deleted`` and ``_loaded_at``; primary key = the table key. Deletes leave a
  tombstone (last values kept, ``_is_deleted = true``); a TRUNCATE tombstones every live row.
* for ``history=True`` specs an append-only ``<mirror>_history`` with the same columns plus ``_op``
  (``I``/``U``/``D``/``T``/``S``), primary key (key..., ``_commit_lsn``, ``_index_in_txn``).
* ``staging.cdc_offsets(source, commit_lsn, index_in_txn, updated_at)``: the highest applied position.

How a batch is applied (one database transaction per :meth:`WarehouseSink.apply` call):

1. Every change is validated (nothing touches the database before that). The source's offsets row
   is locked (``SELECT ... FOR UPDATE``); changes at or below it are dropped.
2. Per table (split at TRUNCATEs) the changes become the rows to stage: columns a change does not
   carry (unchanged TOAST, or every non-key column of a delete) are taken from earlier changes of
   the same key in the batch. A table with history stages every change; a mirror-only table stages
   just the last version of each key, the only one its mirror keeps.
3. The rows are encoded to COPY text and loaded in chunks; a worker thread loads one chunk while
   this thread encodes the next. Per chunk: COPY into a temporary table, fill whatever is still
   missing from the row stored before the batch (one set-based UPDATE of the temporary table),
   append every version to the history table (``ON CONFLICT DO NOTHING`` on key + position), and
   upsert the last version per key into the mirror (``INSERT ... ON CONFLICT DO UPDATE`` that only
   replaces a stored row with a lower position).
4. The offsets row is set to the highest position of the batch and the transaction commits
   (``synchronous_commit`` as configured: the offset must be as durable as the data).

A crash at any point before the commit leaves data and offsets as they were, and replaying the same
or an overlapping batch afterwards applies each change exactly once.

Bad input raises :class:`WarehouseSinkError` and applies nothing: a change for a table without a
warehouse spec, a missing or extra key or column, or an unsupported column type is refused before
the database is touched; a value that cannot be encoded is found while the batch is staged and the
transaction is rolled back. Database errors propagate as psycopg2 exceptions after a rollback.
"""

from __future__ import annotations

import io
import json
import math
import operator
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any
from uuid import UUID

from psycopg2 import sql

from paydata.cdc import failpoints
from paydata.cdc.collector import collector_paused
from paydata.cdc.model import (
    STAGING_SCHEMA,
    CapturedChange,
    CapturedRow,
    Position,
    TableSpec,
    staging_history_table,
    staging_table,
)
from paydata.cdc.pgoutput import UNCHANGED_TOAST
from paydata.speedups import ACCELERATOR
from paydata.sql import load_sql

SQL_FOLDER = "warehouse_staging"
# What a loaded chunk still needs from the rows stored before the batch (bit flags).
FILL_NONE = 0
FILL_BY_KEY = 1  # columns a row lacks come from the row stored under its own key
FILL_BY_OLD_KEY = 2  # ... from the row stored under the old key of a key change (``_moved_from``)
COPY_NULL = "\\N"
ROWS_PER_CHUNK = 10_000  # rows per COPY + upsert; the next chunk is encoded while one loads
COPY_CHUNK_CHARS = 1 << 20  # psycopg2 reads the COPY text in pieces of this size (default 8 KiB)
MAX_IDENTIFIER_BYTES = 63  # PostgreSQL silently truncates longer names, which could merge two tables
META_COLUMNS = frozenset(
    {"_commit_lsn", "_index_in_txn", "_commit_time", "_is_deleted", "_loaded_at", "_op", "_unchanged"}
)
ROW_KINDS = {"insert": "I", "update": "U", "snapshot": "S"}
KINDS = frozenset({*ROW_KINDS, "delete", "truncate"})
_ROW_KINDS = frozenset({"insert", "update", "delete", "truncate"})  # streamed rows: snapshots go through apply()

# Types as ``format_type`` prints them (plus common aliases), optionally as arrays. Anything else is
# refused: the type text is the one piece of DDL that cannot be passed as an identifier or parameter.
_TYPE_PATTERN = re.compile(
    r"""^(?:
        (?:bigint|integer|smallint|int|int2|int4|int8|boolean|bool|text|bytea|date|inet|cidr|macaddr
          |json|jsonb|uuid|real|float4|float8|double\ precision|interval|"char"|name|oid|timestamptz|timetz)
      | (?:numeric|decimal)(?:\(\d{1,4}(?:,\ ?-?\d{1,4})?\))?
      | (?:character\ varying|varchar|character|char|bpchar|bit\ varying|varbit|bit)(?:\(\d{1,8}\))?
      | (?:timestamp|time)(?:\([0-6]\))?(?:\ with(?:out)?\ time\ zone)?
    )(?:\[\])*$""",
    re.VERBOSE,
)


class WarehouseSinkError(ValueError):
    """Bad input or spec for the warehouse sink; raised before anything is written."""


def validate_type(type_name: str) -> str:
    """Return ``type_name`` normalised (lowercase, single spaces) if it is a whitelisted SQL type.

    Raises :class:`WarehouseSinkError` for anything else (unknown names, injected SQL, enums).
    """
    if not isinstance(type_name, str):
        raise WarehouseSinkError(f"column type must be a string, got {type(type_name).__name__}")
    normalised = " ".join(type_name.strip().lower().split())
    if not _TYPE_PATTERN.match(normalised):
        raise WarehouseSinkError(
            f"column type {type_name!r} is not supported by the warehouse sink; allowed are the built-in "
            "scalar types as format_type prints them (e.g. bigint, numeric(20,10), character(3), "
            "timestamp with time zone, jsonb) and arrays of them"
        )
    return normalised


# --- COPY text encoding ------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Escape text for one field of COPY's text format (backslash, tab, newline, carriage return)."""
    if "\x00" in text:
        raise WarehouseSinkError("text contains a NUL character, which PostgreSQL text cannot store")
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _decimal_text(value: Decimal) -> str:
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "Infinity" if value > 0 else "-Infinity"
    return str(value)


def _interval_text(value: timedelta) -> str:
    return f"{value.days} days {value.seconds * 1_000_000 + value.microseconds} microseconds"


_PLAIN_TEXT: dict[type, Callable[[Any], str]] = {
    str: str,
    int: str,
    bool: lambda value: "t" if value else "f",
    float: _float_text,
    Decimal: _decimal_text,
    bytes: lambda value: "\\x" + value.hex(),
    bytearray: lambda value: "\\x" + value.hex(),
    memoryview: lambda value: "\\x" + value.hex(),
    datetime: datetime.isoformat,
    date: date.isoformat,
    time: time.isoformat,
    timedelta: _interval_text,
    UUID: str,
    dict: _json_text,
    list: _json_text,
}


def plain_text(value: Any) -> str:
    """PostgreSQL input text of a non-NULL Python value (before COPY escaping).

    bool -> ``t``/``f``; int, Decimal, float (NaN/Infinity spelled out); str as is; bytes -> hex
    ``\\x..``; date/time/datetime -> ISO 8601 (aware datetimes keep their offset); timedelta -> interval;
    UUID; dict/list -> JSON. Raises :class:`WarehouseSinkError` for any other type.
    """
    convert = _PLAIN_TEXT.get(type(value))
    if convert is None:
        for kind, candidate in _PLAIN_TEXT.items():
            if isinstance(value, kind):
                convert = candidate
                break
        else:
            raise WarehouseSinkError(f"cannot store a value of type {type(value).__name__}: {value!r:.80}")
    return convert(value)


def copy_text(value: Any) -> str:
    """One COPY text-format field for ``value``: ``\\N`` for None, else escaped :func:`plain_text`."""
    if value is None:
        return COPY_NULL
    if type(value) is str:
        return _escape(value)
    if type(value) is int:
        return str(value)
    return _escape(plain_text(value))


def copy_json(value: Any) -> str:
    """COPY field for a json/jsonb column: any JSON-compatible value (str included) serialised as JSON."""
    if value is None:
        return COPY_NULL
    try:
        return _escape(_json_text(value))
    except (TypeError, ValueError) as exc:
        raise WarehouseSinkError(f"value is not JSON serialisable: {exc}") from exc


def _array_element(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list | tuple):
        return "{" + ",".join(_array_element(item) for item in value) + "}"
    text = plain_text(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def copy_array(value: Any) -> str:
    """COPY field for an array column: a (nested) list becomes an array literal, elements quoted."""
    if value is None:
        return COPY_NULL
    if not isinstance(value, list | tuple):
        raise WarehouseSinkError(f"array column needs a list, got {type(value).__name__}")
    return _escape(_array_element(value))


def encoder_for_type(type_name: str) -> Callable[[Any], str]:
    """The COPY field encoder for one value of a column of (whitelisted) SQL type ``type_name``."""
    normalised = validate_type(type_name)
    if normalised.endswith("[]"):
        return copy_array
    if normalised in {"json", "jsonb"}:
        return copy_json
    return copy_text


_NONE_TYPE = type(None)
_COPY_SPECIALS = ("\\", "\t", "\n", "\r", "\x00")
_INTEGER_TYPES = frozenset({"bigint", "integer", "smallint", "int", "int2", "int4", "int8"})
_TEXT_TYPE = re.compile(r"^(?:text|character varying|varchar|character|char|bpchar)(?:\(\d+\))?$")
_MEMO_TIME_TYPE = re.compile(r"^(?:date|timestamptz|timestamp(?:\([0-6]\))? with time zone)$")
_TEXT_OR_NONE = frozenset({str, _NONE_TYPE})
_INT_ONLY = frozenset({int})
_INT_OR_NONE = frozenset({int, _NONE_TYPE})
_BOOL_OR_NONE = frozenset({bool, _NONE_TYPE})
_TIME_OR_NONE = frozenset({datetime, date, _NONE_TYPE})
_BOOLEAN_TEXT = {True: "t", False: "f", None: COPY_NULL}


def _encode_each(encode: Callable[[Any], str]) -> Callable[[list[Any]], list[str]]:
    def encode_values(values: list[Any]) -> list[str]:
        return list(map(encode, values))

    return encode_values


def _encode_text_values(values: list[Any]) -> list[str]:
    kinds = set(map(type, values))
    if kinds <= _TEXT_OR_NONE:
        present = values if _NONE_TYPE not in kinds else [value for value in values if value is not None]
        probe = "".join(present)
        if not any(special in probe for special in _COPY_SPECIALS):
            if _NONE_TYPE not in kinds:
                return list(values)
            return [COPY_NULL if value is None else value for value in values]
    return list(map(copy_text, values))


def _encode_integer_values(values: list[Any]) -> list[str]:
    kinds = set(map(type, values))
    if kinds == _INT_ONLY:
        return list(map(str, values))
    if kinds <= _INT_OR_NONE:
        return [COPY_NULL if value is None else str(value) for value in values]
    return list(map(copy_text, values))


def _encode_boolean_values(values: list[Any]) -> list[str]:
    if set(map(type, values)) <= _BOOL_OR_NONE:
        return list(map(_BOOLEAN_TEXT.__getitem__, values))
    return list(map(copy_text, values))


def _encode_memoised_values(values: list[Any], texts: dict[Any, str] | None = None) -> list[str]:
    """Column of date/timestamptz values; ``texts`` may be shared by the columns of one batch.

    Rows of one transaction often share timestamps (and a row's created/updated times often equal the
    commit time); equal values of these types have equal text (timestamptz compares instants, and
    any offset spelling of one instant is the same value).
    """
    if set(map(type, values)) <= _TIME_OR_NONE:
        if texts is None:
            texts = {None: COPY_NULL}
        for value in set(values).difference(texts):
            texts[value] = value.isoformat()
        return list(map(texts.__getitem__, values))
    return list(map(copy_text, values))


def values_encoder_for_type(type_name: str) -> Callable[[list[Any]], list[str]]:
    """Encoder of a whole column (a list of values) of SQL type ``type_name`` into COPY fields.

    Same output as applying :func:`encoder_for_type` to each value; common types take a fast path
    that checks the whole column at once and falls back to per-value encoding on any surprise.
    """
    normalised = validate_type(type_name)
    if normalised in _INTEGER_TYPES:
        return _encode_integer_values
    if normalised in {"boolean", "bool"}:
        return _encode_boolean_values
    if _TEXT_TYPE.match(normalised):
        return _encode_text_values
    if _MEMO_TIME_TYPE.match(normalised):
        return _encode_memoised_values
    return _encode_each(encoder_for_type(normalised))


def _text_array_literal(names: list[str]) -> str:
    return _escape("{" + ",".join('"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"' for name in names) + "}")


# --- per-table plan ----------------------------------------------------------------------------------


def _statement(name: str, /, **parts: sql.Composable) -> sql.Composed:
    return sql.SQL(load_sql(f"{SQL_FOLDER}/{name}.sql").strip()).format(**parts)


def _identifier_list(names: list[str] | tuple[str, ...], qualifier: str | None = None) -> sql.Composed:
    if qualifier is None:
        return sql.SQL(", ").join(sql.Identifier(name) for name in names)
    return sql.SQL(", ").join(sql.Identifier(qualifier, name) for name in names)


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not name:
        raise WarehouseSinkError(f"{what} must be a non-empty string, got {name!r}")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise WarehouseSinkError(f"{what} {name!r} is longer than {MAX_IDENTIFIER_BYTES} bytes")
    if "\x00" in name:
        raise WarehouseSinkError(f"{what} {name!r} contains a NUL character")


@dataclass
class _TablePlan:
    """Everything needed to apply one table's changes, composed once in :meth:`WarehouseSink.prepare`."""

    spec: TableSpec
    columns: tuple[str, ...]
    column_set: frozenset[str]
    key: tuple[str, ...]
    key_set: frozenset[str]
    non_key: tuple[str, ...]
    types: dict[str, str]
    encoders: tuple[Callable[[list[Any]], list[str]], ...]
    key_of: Callable[[dict[str, Any]], Any]  # a change's key dict -> hashable key (scalar or tuple)
    complete_values: Callable[[dict[str, Any]], tuple[Any, ...]]  # a row with every column -> values
    mirror: str
    history: str | None

    @classmethod
    def build(cls, spec: TableSpec) -> _TablePlan:
        _check_name("source", spec.source)
        _check_name("table", spec.table)
        if not spec.columns:
            raise WarehouseSinkError(f"spec {spec.source}.{spec.table} has no columns")
        if not spec.key:
            raise WarehouseSinkError(f"spec {spec.source}.{spec.table} has no key")
        types: dict[str, str] = {}
        for column, type_name in spec.columns.items():
            _check_name(f"column of {spec.source}.{spec.table}", column)
            if column in META_COLUMNS:
                raise WarehouseSinkError(
                    f"column {column!r} of {spec.source}.{spec.table} collides with a staging bookkeeping column"
                )
            try:
                types[column] = validate_type(type_name)
            except WarehouseSinkError as exc:
                raise WarehouseSinkError(f"{spec.source}.{spec.table}.{column}: {exc}") from None
        missing_key = [column for column in spec.key if column not in spec.columns]
        if missing_key:
            raise WarehouseSinkError(
                f"key column(s) {missing_key} of {spec.source}.{spec.table} are not among its captured columns"
            )
        if len(set(spec.key)) != len(spec.key):
            raise WarehouseSinkError(f"key of {spec.source}.{spec.table} repeats a column: {spec.key}")
        mirror = staging_table(spec.source, spec.table)
        history = staging_history_table(spec.source, spec.table) if spec.history else None
        for name in (mirror, history):
            if name is not None:
                _check_name("staging table name", name)
        columns = tuple(spec.columns)
        return cls(
            spec=spec,
            columns=columns,
            column_set=frozenset(columns),
            key=tuple(spec.key),
            key_set=frozenset(spec.key),
            non_key=tuple(column for column in columns if column not in spec.key),
            types=types,
            encoders=tuple(values_encoder_for_type(types[column]) for column in columns),
            key_of=operator.itemgetter(*spec.key),
            complete_values=operator.itemgetter(*columns) if len(columns) > 1 else _partial_getter(columns),
            mirror=mirror,
            history=history,
        )

    @property
    def label(self) -> str:
        return f"{self.spec.source}.{self.spec.table}"

    def column_definitions(self) -> sql.Composed:
        return sql.SQL(",\n    ").join(
            _statement("column_definition", column=sql.Identifier(column), type=sql.SQL(self.types[column]))
            for column in self.columns
        )

    def validate(self, change: CapturedChange) -> None:
        """Raise :class:`WarehouseSinkError` if ``change`` does not fit this table's spec."""
        kind = change.kind
        if kind == "truncate":
            return
        change_key = change.key
        key_ok = type(change_key) is dict and change_key.keys() == self.key_set
        if key_ok:
            for column in self.key:
                if change_key[column] is None:
                    key_ok = False
        if not key_ok:
            raise WarehouseSinkError(
                f"{self.label} change at {change.position} has key {change_key!r}; "
                f"expected non-NULL values for exactly {list(self.key)}"
            )
        if kind == "delete":
            return
        row = change.row
        if type(row) is not dict:
            raise WarehouseSinkError(f"{self.label} {kind} at {change.position} has no row")
        if row.keys() != self.column_set:
            unknown = sorted(set(row) - self.column_set)
            if unknown:
                raise WarehouseSinkError(
                    f"{self.label} {kind} at {change.position} carries column(s) {unknown} not in the spec"
                )
            absent = sorted(self.column_set - set(row) - change.unchanged)
            if absent:
                raise WarehouseSinkError(
                    f"{self.label} {kind} at {change.position} lacks column(s) {absent} "
                    "(neither in the row nor marked unchanged)"
                )
        for column in self.key:
            if row.get(column) != change_key[column]:
                raise WarehouseSinkError(
                    f"{self.label} {kind} at {change.position}: key column {column!r} is "
                    f"{change_key[column]!r} in the key but {row.get(column)!r} in the row"
                )


_position_of = operator.attrgetter("position")
_commit_lsn_of = operator.attrgetter("commit_lsn")
_index_in_txn_of = operator.attrgetter("index_in_txn")
_commit_time_of = operator.attrgetter("commit_time")


def _partial_getter(columns: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    def values_of(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(map(row.get, columns))

    return values_of


def _encodes(encode: Callable[[list[Any]], list[str]], value: Any) -> bool:
    try:
        encode([value])
    except WarehouseSinkError:
        return False
    return True


def _versions(
    plan: _TablePlan, changes: list[CapturedChange]
) -> list[tuple[CapturedChange, dict[str, Any], str, dict[str, Any] | None]]:
    """``(change, values, op, origin)`` per row to stage: every change with history, else the last per key.

    ``values`` is the change's row with the columns it does not carry taken from the key's previous
    version in ``changes`` (a delete carries none: it keeps the previous version's values, or just the
    key); the update half of a key change takes them from the old key's (``moved_from``). ``origin``
    is the key whose *stored* row holds the columns still missing, when that is not the row's own
    key (a key change whose old key has no version in the batch), else None. ``changes`` must be in
    position order.
    """
    column_count = len(plan.columns)
    key_of = plan.key_of
    history = plan.history is not None
    latest: dict[Any, tuple[dict[str, Any], dict[str, Any] | None]] = {}  # key -> (values, origin)
    last: dict[Any, tuple[CapturedChange, dict[str, Any], str, dict[str, Any] | None]] = {}
    versions: list[tuple[CapturedChange, dict[str, Any], str, dict[str, Any] | None]] = []
    for change in changes:
        key = key_of(change.key)
        if change.kind == "delete":
            previous = latest.get(key)
            version = (change, change.key, "D", None) if previous is None else (change, previous[0], "D", previous[1])
        else:
            row = change.row
            origin = None
            if len(row) < column_count:
                moved_from = change.moved_from
                previous = latest.get(key if moved_from is None else key_of(moved_from))
                if previous is not None:
                    row = {**previous[0], **row}
                    origin = previous[1] if len(row) < column_count else None
                elif moved_from is not None:
                    origin = moved_from
            latest[key] = (row, origin)
            version = (change, row, ROW_KINDS[change.kind], origin)
        if history:
            versions.append(version)
        else:
            last[key] = version
    return versions if history else list(last.values())


def _row_versions(plan: _TablePlan, rows: list[CapturedRow]) -> list[tuple[CapturedRow, Any, str, bool, Any]]:
    """:func:`_versions` for text rows: ``(row, values, op, partial, origin)``, ``values`` in plan column order.

    ``values`` is ``None`` for a delete whose key has no earlier version in the batch (only the key
    is known; the rest comes from the stored row). Unchanged TOAST values are taken from the key's
    previous version in the batch where there is one (the old key's, for the update half of a key
    change); ``partial`` says whether any remain (also for a delete that repeats such a version), and
    ``origin`` names the key whose stored row holds them when that is not the row's own key, else None.
    """
    history = plan.history is not None
    latest: dict[Any, tuple[Any, bool, Any]] = {}
    versions: list[tuple[CapturedRow, Any, str, bool, Any]] = []
    last: dict[Any, tuple[CapturedRow, Any, str, bool, Any]] = {}
    unchanged = UNCHANGED_TOAST
    for row in rows:
        key = row.key
        kind = row.kind
        if kind == "delete":
            previous = latest.get(key)
            version = (row, None, "D", False, None) if previous is None else (row, previous[0], "D", previous[1], previous[2])
        else:
            values = row.values
            partial = row.has_unchanged
            origin = None
            if partial:
                moved_from = row.moved_from
                previous = latest.get(key if moved_from is None else moved_from)
                if previous is not None:
                    values = [old if value is unchanged else value for value, old in zip(values, previous[0], strict=True)]
                    partial = unchanged in values
                    origin = previous[2] if partial else None
                elif moved_from is not None:
                    origin = moved_from
            latest[key] = (values, partial, origin)
            version = (row, values, "I" if kind == "insert" else "U", partial, origin)
        if history:
            versions.append(version)
        else:
            last[key] = version
    return versions if history else list(last.values())


def _python_copy_fields(values: Any) -> str:
    """One COPY text row: values joined by tabs, None and unchanged TOAST as ``\\N``, the rest escaped.

    A value holding NUL (which PostgreSQL text cannot store) raises :class:`WarehouseSinkError`.
    The twin of the C ``copy_fields`` (:mod:`paydata.speedups`). Fast path: join, then escape field
    by field only if the line holds a backslash that is not a NULL marker, a newline, a carriage
    return or a surplus tab (which plain values never do).
    """
    unchanged = UNCHANGED_TOAST
    fields = [COPY_NULL if value is None or value is unchanged else value for value in values]
    line = "\t".join(fields)
    nulls = sum(1 for field in fields if field is COPY_NULL)
    if (line.count("\\") != nulls or "\n" in line or "\r" in line or "\x00" in line
            or line.count("\t") != len(fields) - 1):
        line = "\t".join(field if field is COPY_NULL else _escape(field) for field in fields)
    return line


_copy_fields = ACCELERATOR.copy_fields if ACCELERATOR is not None else _python_copy_fields


def _encode_row_versions(
    plan: _TablePlan, versions: list[tuple[CapturedRow, Any, str, bool, Any]], time_texts: dict[Any, str]
) -> tuple[str, int]:
    """COPY text (plan columns, then the bookkeeping columns) for text rows; see :meth:`WarehouseSink._encode_versions`.

    Values are already PostgreSQL output text: each row is joined and escaped by :func:`_copy_fields`.
    """
    columns = plan.columns
    unchanged = UNCHANGED_TOAST
    key_positions = [columns.index(column) for column in plan.key]
    single_key = len(key_positions) == 1
    all_unchanged = _text_array_literal(list(plan.non_key)) if plan.non_key else COPY_NULL
    copy_fields = _copy_fields
    lines: list[str] = []
    append = lines.append
    needs_stored_values = FILL_NONE
    for row, values, op, partial, origin in versions:
        moved_text = COPY_NULL
        if values is None:
            fields: list[Any] = [None] * len(columns)
            key = (row.key,) if single_key else row.key
            for position, value in zip(key_positions, key, strict=True):
                fields[position] = value
            line = copy_fields(fields)
            unchanged_text = all_unchanged
            if plan.non_key:
                needs_stored_values |= FILL_BY_KEY
        else:
            line = copy_fields(values)
            unchanged_text = COPY_NULL
            if partial:
                missing = [column for column, value in zip(columns, values, strict=True) if value is unchanged]
                if missing:
                    unchanged_text = _text_array_literal(missing)
                    if origin is None:
                        needs_stored_values |= FILL_BY_KEY
                    else:
                        moved_text = _text_array_literal([origin] if single_key else list(origin))
                        needs_stored_values |= FILL_BY_OLD_KEY
        commit_time = row.commit_time
        time_text = time_texts.get(commit_time)
        if time_text is None:
            time_text = time_texts[commit_time] = COPY_NULL if commit_time is None else commit_time.isoformat()
        append(f"{line}\t{row.commit_lsn}\t{row.index_in_txn}\t{time_text}\t{op}\t{unchanged_text}\t{moved_text}")
    append("")
    return "\n".join(lines), needs_stored_values


def _segments(changes: list[CapturedChange]) -> Iterator[tuple[str, CapturedChange | list[CapturedChange]]]:
    """Group ordered changes by table; a TRUNCATE splits its table's changes into before and after."""
    open_segments: dict[str, list[CapturedChange]] = {}
    ordered: list[tuple[str, CapturedChange | list[CapturedChange]]] = []
    for change in changes:
        if change.kind == "truncate":
            open_segments.pop(change.table, None)
            ordered.append((change.table, change))
            continue
        segment = open_segments.get(change.table)
        if segment is None:
            segment = open_segments[change.table] = []
            ordered.append((change.table, segment))
        segment.append(change)
    yield from ordered


class WarehouseSink:
    """Applies captured changes to the warehouse staging layer, exactly once per position.

    ``conn_factory`` returns a new psycopg2 connection to the warehouse database (autocommit off);
    the sink keeps one connection, opens another after a connection error, and never shares it.
    Call :meth:`prepare` with the table specs before :meth:`apply`. Not thread-safe (``apply`` hands
    its connection to one short-lived worker thread of its own while it encodes); several sinks
    (processes) may apply for the same source concurrently: the offsets row lock serialises them.
    """

    name = "warehouse"

    def __init__(self, conn_factory: Callable[[], Any]):
        self._conn_factory = conn_factory
        self._conn: Any = None
        self._plans: dict[tuple[str, str], _TablePlan] = {}
        self._schema = sql.Identifier(STAGING_SCHEMA)
        self._rows_per_chunk = ROWS_PER_CHUNK

    # -- connection ---------------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            conn = self._conn_factory()
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(load_sql(f"{SQL_FOLDER}/session_settings.sql"))
            conn.autocommit = False
            self._conn = conn
        return self._conn

    def _abandon(self) -> None:
        """Roll back the open transaction; drop the connection if it is unusable."""
        conn, self._conn = self._conn, None
        if conn is None or conn.closed:
            return
        try:
            conn.rollback()
        except Exception:  # the connection is broken: closing it is all that is left to do
            conn.close()
            return
        self._conn = conn

    def close(self) -> None:
        """Close the sink's connection (a later call opens a new one)."""
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    # -- DDL ----------------------------------------------------------------------------------------

    def prepare(self, specs: list[TableSpec]) -> None:
        """Create schema ``staging``, ``cdc_offsets`` and the mirror/history tables of ``specs``.

        Specs whose ``sinks`` do not name ``warehouse`` are ignored. Idempotent: existing tables are
        kept and only columns new in a spec are added (``ADD COLUMN``, NULL for existing rows). Raises
        :class:`WarehouseSinkError` (nothing created) for an invalid spec, an unsupported type, or an
        existing table whose key or column base type differs from the spec.
        """
        plans = [_TablePlan.build(spec) for spec in specs if self.name in spec.sinks]
        seen: set[tuple[str, str]] = set()
        for plan in plans:
            if (plan.spec.source, plan.spec.table) in seen:
                raise WarehouseSinkError(f"two specs for {plan.label}")
            seen.add((plan.spec.source, plan.spec.table))
        conn = self._connection()
        try:
            with conn.cursor() as cursor:
                cursor.execute(load_sql(f"{SQL_FOLDER}/prepare_lock.sql"))
                cursor.execute(_statement("create_schema", schema=self._schema))
                cursor.execute(_statement("create_offsets", schema=self._schema))
                # An apply locks its source's offsets row first, then the staging tables; DDL here
                # (CREATE INDEX IF NOT EXISTS locks the table even when the index exists) takes the
                # same row first, so a run preparing while another applies waits instead of deadlocking.
                for source in sorted({plan.spec.source for plan in plans}):
                    cursor.execute(_statement("ensure_offset", schema=self._schema), {"source": source})
                    cursor.execute(_statement("lock_offset", schema=self._schema), {"source": source})
                for plan in plans:
                    self._prepare_table(cursor, plan, plan.mirror, "create_mirror")
                    if plan.history is not None:
                        self._prepare_table(cursor, plan, plan.history, "create_history")
            conn.commit()
        except BaseException:
            self._abandon()
            raise
        for plan in plans:
            self._plans[(plan.spec.source, plan.spec.table)] = plan

    def _prepare_table(self, cursor: Any, plan: _TablePlan, table: str, create_statement: str) -> None:
        cursor.execute(load_sql(f"{SQL_FOLDER}/table_columns.sql"), {"schema": STAGING_SCHEMA, "table": table})
        existing = {name: (base_type, in_key) for name, base_type, in_key in cursor.fetchall()}
        table_id = sql.Identifier(table)
        if not existing:
            cursor.execute(
                _statement(
                    create_statement,
                    schema=self._schema,
                    table=table_id,
                    columns=plan.column_definitions(),
                    key=_identifier_list(plan.key),
                )
            )
        cursor.execute(
            _statement(
                "create_position_index",
                schema=self._schema,
                table=table_id,
                index=sql.Identifier(f"{table}_position_idx"[:63]),
            )
        )
        if not existing:
            return
        existing_key = {name for name, (_, in_key) in existing.items() if in_key} - META_COLUMNS
        if existing_key != set(plan.key):
            raise WarehouseSinkError(
                f"staging.{table} has key {sorted(existing_key)} but the spec for {plan.label} says "
                f"{list(plan.key)}; changing a key needs a manual migration"
            )
        for column in plan.columns:
            if column in existing:
                cursor.execute(load_sql(f"{SQL_FOLDER}/base_type.sql"), {"type": plan.types[column]})
                wanted = cursor.fetchone()[0]
                if wanted != existing[column][0]:
                    raise WarehouseSinkError(
                        f"staging.{table}.{column} has type {existing[column][0]} but the spec for "
                        f"{plan.label} says {plan.types[column]}; changing a type needs a manual migration"
                    )
                continue
            cursor.execute(
                _statement(
                    "add_column",
                    schema=self._schema,
                    table=table_id,
                    column=sql.Identifier(column),
                    type=sql.SQL(plan.types[column]),
                )
            )

    # -- offsets ------------------------------------------------------------------------------------

    def applied_position(self, source: str) -> Position:
        """Highest position applied for ``source``; ``Position.zero()`` if none (or not prepared yet)."""
        conn = self._connection()
        try:
            with conn.cursor() as cursor:
                cursor.execute(load_sql(f"{SQL_FOLDER}/offsets_table_exists.sql"), {"schema": STAGING_SCHEMA})
                if not cursor.fetchone()[0]:
                    conn.commit()
                    return Position.zero()
                cursor.execute(_statement("select_offset", schema=self._schema), {"source": source})
                found = cursor.fetchone()
            conn.commit()
        except BaseException:
            self._abandon()
            raise
        return Position(found[0], found[1]) if found else Position.zero()

    def _store_offset(self, cursor: Any, source: str, position: Position) -> None:
        cursor.execute(
            _statement("update_offset", schema=self._schema),
            {"source": source, "commit_lsn": position.commit_lsn, "index_in_txn": position.index_in_txn},
        )

    # -- apply --------------------------------------------------------------------------------------

    def _ordered_and_validated(self, source: str, changes: list[CapturedChange]) -> list[CapturedChange]:
        plans_by_table: dict[str, _TablePlan] = {}
        for change in changes:
            if not isinstance(change, CapturedChange):
                raise WarehouseSinkError(f"expected CapturedChange, got {type(change).__name__}")
            if change.source != source:
                raise WarehouseSinkError(
                    f"change for source {change.source!r} at {change.position} in a batch for {source!r}"
                )
            if change.kind not in KINDS:
                raise WarehouseSinkError(f"unknown change kind {change.kind!r} at {change.position}")
            if not isinstance(change.position, Position):
                raise WarehouseSinkError(f"change position must be a Position, got {change.position!r}")
            plan = plans_by_table.get(change.table)
            if plan is None:
                plan = self._plans.get((source, change.table))
                if plan is None:
                    raise WarehouseSinkError(
                        f"no warehouse spec for {source}.{change.table}: the table is not captured for the "
                        "warehouse, or prepare() was not called with its spec"
                    )
                plans_by_table[change.table] = plan
            plan.validate(change)
        positions = [(position.commit_lsn, position.index_in_txn) for position in map(_position_of, changes)]
        if not all(map(operator.lt, positions, islice(positions, 1, None))):
            order = sorted(range(len(changes)), key=positions.__getitem__)
            changes_by_index = changes
            changes = [changes[i] for i in order]
            for previous, following in zip(order, order[1:], strict=False):
                first, second = changes_by_index[previous], changes_by_index[following]
                if positions[previous] == positions[following] and not (
                    first.kind == second.kind == "snapshot"
                    # an update that moves its key: a delete of the old key, then the update, at one position
                    or (first.kind == "delete" and second.kind == "update" and first.key != second.key)
                ):
                    raise WarehouseSinkError(f"two changes at position {Position(*positions[previous])} in one batch")
        return changes

    def apply(self, source: str, changes: list[CapturedChange]) -> Position:
        """Apply ``changes`` for ``source`` in one transaction with the new offset; return the offset.

        Changes may come in any order (they are applied by position); those at or below the stored
        offset are skipped, so replaying a batch, or an overlapping one, changes nothing twice.
        Exception: snapshot rows all share ``(consistent_point, -1)``, so snapshot rows *at* the stored
        offset are applied again (a snapshot may span several batches); the per-row position guard
        and the history key make a repeated snapshot row a no-op.
        Raises :class:`WarehouseSinkError` for bad input before touching the database; on any error
        the transaction is rolled back and neither data nor offset change.
        """
        with collector_paused():
            return self._apply(source, changes)

    def apply_rows(self, source: str, rows: list[CapturedRow]) -> Position:
        """:meth:`apply` for :class:`CapturedRow` batches: values go to COPY as the source's output text.

        The engine's streaming path. Same guarantees as :meth:`apply` (one transaction with the
        offset, changes at or below it skipped, the same staging rows), without parsing a value in
        Python: the warehouse column has the source column's type, so the source's output text is
        valid COPY input and the server parses it. Rows must be in position order, none repeated.
        Raises :class:`WarehouseSinkError` for bad input before touching the database.
        """
        with collector_paused():
            return self._apply_rows(source, rows)

    def replay(self, source: str, change: CapturedChange) -> bool:
        """Apply one change that lies below the stored offset (a dead letter re-read from the source).

        Under the source's offset lock, which stays where it is. Returns False, applying nothing, when
        the mirror already holds a version of the key at a later position: the history must not get
        an old position with newer values. Raises :class:`WarehouseSinkError` for bad input.
        """
        (change,) = self._ordered_and_validated(source, [change])
        plan = self._plans[(source, change.table)]
        conn = self._connection()
        try:
            with collector_paused(), conn.cursor() as cursor:
                cursor.execute(_statement("ensure_offset", schema=self._schema), {"source": source})
                cursor.execute(_statement("lock_offset", schema=self._schema), {"source": source})
                key_match = sql.SQL(" AND ").join(
                    _statement("key_column_equals", column=sql.Identifier(column)) for column in plan.key
                )
                cursor.execute(
                    _statement("select_row_position", schema=self._schema, table=sql.Identifier(plan.mirror),
                               key_match=key_match),
                    [change.key[column] for column in plan.key],
                )
                stored = cursor.fetchone()
                if stored is not None and Position(*stored) > change.position:
                    conn.commit()
                    return False
                self._apply_pending(cursor, source, [change])
            conn.commit()
        except BaseException:
            self._abandon()
            raise
        return True

    def _validated_rows(self, source: str, rows: list[CapturedRow]) -> list[CapturedRow]:
        """Raise :class:`WarehouseSinkError` unless every row fits a prepared spec, in position order.

        Checked per row (cheaply: a layout is compared with its spec once per batch): type, source,
        kind, table, order, a non-NULL key, and the number of values.
        """
        plans_by_layout: dict[int, tuple[_TablePlan, int]] = {}
        previous = (-1, -(2**63))
        for row in rows:
            if type(row) is not CapturedRow:
                raise WarehouseSinkError(f"expected CapturedRow, got {type(row).__name__}")
            position = (row.commit_lsn, row.index_in_txn)
            kind = row.kind
            # An update that moves a key yields a delete and an update at one position (different keys).
            if position < previous or (position == previous and kind != "update"):
                raise WarehouseSinkError(
                    f"rows must be in position order without repeats: {Position(*position)} after {Position(*previous)}"
                )
            previous = position
            if row.source != source:
                raise WarehouseSinkError(f"row for source {row.source!r} at {row.position} in a batch for {source!r}")
            if kind not in _ROW_KINDS:
                raise WarehouseSinkError(f"unknown change kind {kind!r} at {row.position}")
            layout = row.layout
            checked = plans_by_layout.get(id(layout))
            if checked is None:
                plan = self._plans.get((source, row.table))
                if plan is None:
                    raise WarehouseSinkError(
                        f"no warehouse spec for {source}.{row.table}: the table is not captured for the "
                        "warehouse, or prepare() was not called with its spec"
                    )
                if layout.columns != plan.columns or layout.key != plan.key or layout.table != row.table:
                    raise WarehouseSinkError(
                        f"{plan.label}: rows carry columns {list(layout.columns)} keyed by {list(layout.key)}, "
                        f"the spec has {list(plan.columns)} keyed by {list(plan.key)}"
                    )
                checked = plans_by_layout[id(layout)] = (plan, len(plan.key))
            plan, key_width = checked
            if row.table != plan.spec.table:
                raise WarehouseSinkError(f"row for table {row.table!r} at {row.position} carries the layout of {plan.label}")
            if kind == "truncate":
                continue
            key = row.key
            if key is None or (key_width > 1 and (type(key) is not tuple or len(key) != key_width or None in key)):
                raise WarehouseSinkError(f"{plan.label} {kind} at {row.position} has key {key!r}; expected non-NULL "
                                         f"values for {list(plan.key)}")
            if kind != "delete" and (row.values is None or len(row.values) != len(plan.columns)):
                raise WarehouseSinkError(
                    f"{plan.label} {kind} at {row.position} carries "
                    f"{'no values' if row.values is None else f'{len(row.values)} values'} for {len(plan.columns)} columns"
                )
        return rows

    def _apply_rows(self, source: str, rows: list[CapturedRow]) -> Position:
        rows = self._validated_rows(source, list(rows))

        def after(stored: Position) -> list[CapturedRow]:
            if rows and (rows[0].commit_lsn, rows[0].index_in_txn) > (stored.commit_lsn, stored.index_in_txn):
                return rows  # in order, so every row is above the stored offset
            return [row for row in rows if row.position > stored]

        return self._in_offset_transaction(source, after, self._apply_pending_rows)

    def _apply_pending_rows(self, cursor: Any, source: str, pending: list[CapturedRow]) -> None:
        """:meth:`_apply_pending` for rows: same chunks, temporary tables and statements."""
        time_texts: dict[Any, str] = {}
        self._stage(
            cursor, source, pending, _row_versions,
            lambda plan, versions: _encode_row_versions(plan, versions, time_texts), "cdc_rows",
        )

    def _apply(self, source: str, changes: list[CapturedChange]) -> Position:
        changes = self._ordered_and_validated(source, list(changes))

        def after(stored: Position) -> list[CapturedChange]:
            if changes and changes[0].position > stored:
                return changes  # sorted, so every change is above the stored offset
            # Snapshot rows share one position, so a snapshot loaded in several batches repeats the
            # stored offset; they are re-applied and the per-row guard makes a repeat a no-op.
            return [
                change for change in changes
                if change.position > stored or (change.kind == "snapshot" and change.position == stored)
            ]

        return self._in_offset_transaction(source, after, self._apply_pending)

    def _in_offset_transaction(
        self, source: str, pending_after: Callable[[Position], list[Any]], stage: Callable[[Any, str, list[Any]], None]
    ) -> Position:
        """One transaction: lock the source's offset, stage what lies after it, move it; return it.

        ``pending_after(stored)`` picks the changes to apply; ``stage(cursor, source, pending)`` writes
        them. On any error the transaction is rolled back and neither data nor offset change.
        """
        conn = self._connection()
        try:
            with conn.cursor() as cursor:
                cursor.execute(_statement("ensure_offset", schema=self._schema), {"source": source})
                cursor.execute(_statement("lock_offset", schema=self._schema), {"source": source})
                stored = Position(*cursor.fetchone())
                pending = pending_after(stored)
                if not pending:
                    conn.commit()
                    return stored
                stage(cursor, source, pending)
                applied = pending[-1].position
                if applied != stored:
                    self._store_offset(cursor, source, applied)
                failpoints.reach("warehouse.in_transaction")
            conn.commit()
        except BaseException:
            self._abandon()
            raise
        return applied

    def _apply_pending(self, cursor: Any, source: str, pending: list[CapturedChange]) -> None:
        self._stage(cursor, source, pending, _versions, self._encode_versions, "cdc_batch")

    def _stage(
        self,
        cursor: Any,
        source: str,
        pending: list[Any],
        versions_of: Callable[[_TablePlan, list[Any]], list[Any]],
        encode: Callable[[_TablePlan, list[Any]], tuple[str, int]],
        prefix: str,
    ) -> None:
        """Stage ``pending`` chunk by chunk, encoding the next chunk while the database loads this one.

        ``versions_of`` picks the rows to stage per table segment, ``encode`` turns a chunk of them
        into COPY text. Only the one worker thread uses the connection while a chunk is loading; this
        thread waits for it before issuing any statement itself, and leaving the ``with`` block (also
        on an error) waits for it too, so a rollback never races a running statement.
        """
        rows_per_chunk = self._rows_per_chunk
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="warehouse-sink-load") as loader:
            loading: Future[None] | None = None
            for number, (table, work) in enumerate(_segments(pending)):
                plan = self._plans[(source, table)]
                if not isinstance(work, list):  # a truncate
                    if loading is not None:
                        loading.result()
                        loading = None
                    self._apply_truncate(cursor, plan, work)
                    continue
                versions = versions_of(plan, work)
                for part, start in enumerate(range(0, len(versions), rows_per_chunk)):
                    text, needs_stored_values = encode(plan, versions[start : start + rows_per_chunk])
                    if loading is not None:
                        loading.result()
                    loading = loader.submit(
                        self._load_chunk, cursor, plan, text, needs_stored_values, f"{prefix}_{number}_{part}"
                    )
            if loading is not None:
                loading.result()

    def _apply_truncate(self, cursor: Any, plan: _TablePlan, change: CapturedChange) -> None:
        parts: dict[str, sql.Composable] = {"schema": self._schema, "table": sql.Identifier(plan.mirror)}
        name = "truncate_mirror"
        if plan.history is not None:
            name = "truncate_mirror_with_history"
            parts.update(history=sql.Identifier(plan.history), columns=_identifier_list(plan.columns))
        cursor.execute(
            _statement(name, **parts),
            {
                "commit_lsn": change.position.commit_lsn,
                "index_in_txn": change.position.index_in_txn,
                "commit_time": change.commit_time,
            },
        )

    def _encode_segment(self, plan: _TablePlan, changes: list[CapturedChange]) -> tuple[str, int]:
        """COPY text for ``changes`` and whether any row still lacks values (needs the stored row).

        Each row is the key's complete version as far as this batch knows it: columns a change does
        not carry are taken from the key's previous change in the batch, and the rest are listed in
        the row's ``_unchanged`` array. A table with history gets a row per change; a table without
        only gets the last version of each key (the only one its mirror keeps), so the rows' keys
        are unique. Encoding runs column by column so that each column's type is checked once for
        the whole batch.
        """
        return self._encode_versions(plan, _versions(plan, changes))

    def _encode_versions(
        self, plan: _TablePlan, versions: list[tuple[CapturedChange, dict[str, Any], str, dict[str, Any] | None]]
    ) -> tuple[str, int]:
        """COPY text and the stored-values flag for ``versions`` (see :func:`_versions`)."""
        column_count = len(plan.columns)
        non_key = plan.non_key
        complete_values = plan.complete_values
        records: list[tuple[Any, ...]] = []
        unchanged_texts: list[str] = []
        moved_texts: list[str] = []
        needs_stored_values = FILL_NONE
        for _, values, _, origin in versions:
            if len(values) < column_count:
                records.append(tuple(map(values.get, plan.columns)))
                unchanged_texts.append(_text_array_literal([column for column in non_key if column not in values]))
                if origin is None:
                    moved_texts.append(COPY_NULL)
                    needs_stored_values |= FILL_BY_KEY
                else:
                    moved_texts.append(_text_array_literal([str(origin[column]) for column in plan.key]))
                    needs_stored_values |= FILL_BY_OLD_KEY
            else:
                records.append(complete_values(values))
                unchanged_texts.append(COPY_NULL)
                moved_texts.append(COPY_NULL)
        version_changes = [change for change, _, _, _ in versions]
        time_texts: dict[Any, str] = {None: COPY_NULL}
        fields: list[list[str]] = []
        for column, encode, values in zip(plan.columns, plan.encoders, zip(*records, strict=True), strict=True):
            values = list(values)
            try:
                if encode is _encode_memoised_values:
                    fields.append(_encode_memoised_values(values, time_texts))
                else:
                    fields.append(encode(values))
            except WarehouseSinkError as exc:
                culprit = next(
                    (change for change, value in zip(version_changes, values, strict=True)
                     if not _encodes(encode, value)),
                    None,
                )
                where = f" {culprit.kind} at {culprit.position}" if culprit is not None else ""
                raise WarehouseSinkError(f"{plan.label}{where}, column {column!r}: {exc}") from None
        positions = list(map(_position_of, version_changes))
        fields.append(_encode_integer_values(list(map(_commit_lsn_of, positions))))
        fields.append(_encode_integer_values(list(map(_index_in_txn_of, positions))))
        fields.append(_encode_memoised_values(list(map(_commit_time_of, version_changes)), time_texts))
        fields.append([op for _, _, op, _ in versions])
        fields.append(unchanged_texts)
        fields.append(moved_texts)
        lines = list(map("\t".join, zip(*fields, strict=True)))
        lines.append("")
        return "\n".join(lines), needs_stored_values

    def _load_chunk(self, cursor: Any, plan: _TablePlan, text: str, needs_stored_values: int, batch: str) -> None:
        """COPY one encoded chunk into a temporary table, fill it, append history, upsert the mirror.

        Chunks of one segment are loaded in position order. A key's versions in a later chunk are
        newer, so the per-row guard lets them replace the earlier chunk's; columns still missing
        after merging within the batch are ones no change of the batch carried, which an earlier
        chunk only ever copied from the stored row, so filling from the mirror gives the same value.
        """
        batch_id = sql.Identifier(batch)
        table_id = sql.Identifier(plan.mirror)
        columns = _identifier_list(plan.columns)
        cursor.execute(_statement("create_batch", batch=batch_id, columns=plan.column_definitions()))
        cursor.copy_expert(
            _statement("copy_batch", batch=batch_id, columns=columns).as_string(cursor.connection),
            io.StringIO(text),
            COPY_CHUNK_CHARS,
        )
        if needs_stored_values and plan.non_key:
            cursor.execute(load_sql(f"{SQL_FOLDER}/fill_plan_settings.sql"))
            assignments = sql.SQL(",\n    ").join(
                _statement("fill_unchanged_column", column=sql.Identifier(column), column_name=sql.Literal(column))
                for column in plan.non_key
            )
            parts = {"batch": batch_id, "schema": self._schema, "table": table_id, "assignments": assignments}
            if needs_stored_values & FILL_BY_KEY:
                key_match = _statement(
                    "key_match", left=_identifier_list(plan.key, "b"), right=_identifier_list(plan.key, "m")
                )
                cursor.execute(_statement("fill_unchanged", key_match=key_match, **parts))
            if needs_stored_values & FILL_BY_OLD_KEY:
                old_key_match = sql.SQL("\n  AND ").join(
                    _statement("old_key_match_column", column=sql.Identifier(column),
                               index=sql.Literal(number), type=sql.SQL(plan.types[column]))
                    for number, column in enumerate(plan.key, start=1)
                )
                cursor.execute(_statement("fill_unchanged_from_old_key", old_key_match=old_key_match, **parts))
            cursor.execute(load_sql(f"{SQL_FOLDER}/reset_plan_settings.sql"))
        if plan.history is not None:
            cursor.execute(
                _statement(
                    "insert_history",
                    schema=self._schema,
                    history=sql.Identifier(plan.history),
                    columns=columns,
                    batch=batch_id,
                )
            )
        assignments = sql.SQL(",\n    ").join(
            _statement("upsert_mirror_column", column=sql.Identifier(column)) for column in plan.non_key
        )
        if not plan.non_key:
            assignments = _statement("upsert_mirror_column", column=sql.Identifier(plan.key[0]))
        cursor.execute(
            _statement(
                "upsert_mirror" if plan.history is not None else "upsert_mirror_unique",
                schema=self._schema,
                table=table_id,
                columns=columns,
                key=_identifier_list(plan.key),
                batch=batch_id,
                assignments=assignments,
            )
        )
