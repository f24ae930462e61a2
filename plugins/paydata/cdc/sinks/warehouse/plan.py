"""The plan of one staging table: its columns, key, types, encoders and the DDL that creates it.

Built from a :class:`paydata.cdc.model.TableSpec` once per :meth:`WarehouseSink.prepare`, and
validated there (names, types, key), so staging a batch never checks a spec again.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from paydata.cdc.model import (
    CapturedChange,
    TableSpec,
    staging_history_table,
    staging_table,
)
from paydata.cdc.sinks.warehouse.copytext import WarehouseSinkError, validate_type, values_encoder_for_type
from paydata.sql import load_sql

MAX_IDENTIFIER_BYTES = 63  # PostgreSQL silently truncates longer names, which could merge two tables
META_COLUMNS = frozenset(
    {"_commit_lsn", "_index_in_txn", "_commit_time", "_is_deleted", "_loaded_at", "_op", "_unchanged"}
)
ROW_KINDS = {"insert": "I", "update": "U", "snapshot": "S"}
KINDS = frozenset({*ROW_KINDS, "delete", "truncate"})
_ROW_KINDS = frozenset({"insert", "update", "delete", "truncate"})  # streamed rows: snapshots go through apply()
SQL_FOLDER = "warehouse/queries/staging"


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
