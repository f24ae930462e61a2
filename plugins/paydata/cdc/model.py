"""The contract between the CDC engine and its sinks.

The engine decodes pgoutput transactions, applies the capture manifest (keep / tokenise / drop per
column) and hands each sink a batch of :class:`CapturedChange` in commit order. PII never passes
this point in clear: a sink only ever sees kept or tokenised values.

Exactly-once rests on three rules every sink follows:

1. A sink stores the highest :class:`Position` it applied *in the same transaction* as the data
   (warehouse: a row in ``staging.cdc_offsets``; Mongo: a per-document position guard plus an
   offsets document).
2. A sink skips every change whose position is not greater than the stored one for its source, so
   a batch replayed after a crash changes nothing.
3. The engine advances the slot only to the lowest position that every sink reports as applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

CapturedKind = Literal["insert", "update", "delete", "truncate", "snapshot"]


@dataclass(frozen=True, order=True, slots=True)
class Position:
    """Totally ordered place of a change in a source's history: (commit LSN, index in transaction).

    Snapshot rows use ``(consistent_point_lsn, -1)``: before every streamed change of the slot.
    """

    commit_lsn: int
    index_in_txn: int

    @classmethod
    def zero(cls) -> Position:
        return cls(0, -1)


@dataclass(slots=True)
class CapturedChange:
    """One change after the manifest: values are kept or tokenised, never raw PII.

    ``row`` holds the new row's captured columns for insert/update/snapshot (columns whose value the
    source did not send because it is unchanged TOAST are absent from ``row`` and listed in
    ``unchanged``), ``None`` for delete/truncate. ``key`` holds the captured table's key columns.
    """

    source: str  # logical source database: "reference" or "oltp"
    table: str  # source table, e.g. "charge" (schema public is implied)
    kind: CapturedKind
    position: Position
    commit_time: datetime
    key: dict[str, Any]
    row: dict[str, Any] | None
    unchanged: frozenset[str] = frozenset()
    # The update half of a key change: the old key. Columns in ``unchanged`` were not sent and
    # belong to the row stored under this key (the new key has no stored row yet).
    moved_from: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RowLayout:
    """The shape of a :class:`CapturedRow`'s values, shared by every row of one table and relation.

    ``columns``: the captured columns in manifest order (what ``values`` holds). ``parsers``: per
    column, the function turning its output text into the Python value (``None`` for text kept as
    is, tokens included). ``key``: the key columns; a row's ``key`` is the key value itself for a
    one-column key, else the tuple of key values.
    """

    table: str
    columns: tuple[str, ...]
    parsers: tuple[Any, ...]
    key: tuple[str, ...]


@dataclass(slots=True)
class CapturedRow:
    """One change after the manifest with its values as PostgreSQL output text (the engine's hot path).

    The same change as a :class:`CapturedChange`, before any type parsing: ``values`` holds the
    captured columns in ``layout.columns`` order as the source's output text (a token for a
    tokenised column), ``None`` for NULL or :data:`paydata.cdc.pgoutput.UNCHANGED_TOAST` for an
    unchanged TOASTed value (``has_unchanged`` says whether any is present); ``values`` is ``None``
    for delete and truncate. ``key`` is as :class:`RowLayout` describes (tokens for tokenised key
    columns). A sink that loads text into PostgreSQL uses it as is; :meth:`typed` gives the
    :class:`CapturedChange` every sink understands.
    """

    source: str
    table: str
    kind: CapturedKind
    commit_lsn: int
    index_in_txn: int
    commit_time: datetime
    key: Any
    values: tuple[Any, ...] | list[Any] | None
    layout: RowLayout
    has_unchanged: bool = False
    moved_from: Any = None  # the update half of a key change: the old key, as ``key`` is held

    @property
    def position(self) -> Position:
        return Position(self.commit_lsn, self.index_in_txn)

    def typed(self) -> CapturedChange:
        """This change as a :class:`CapturedChange` (values parsed with the layout's parsers)."""
        from paydata.cdc.pgoutput import UNCHANGED_TOAST

        layout = self.layout
        if self.kind == "truncate":
            return CapturedChange(self.source, self.table, "truncate", self.position, self.commit_time, {}, None)
        key_parsers = [layout.parsers[layout.columns.index(column)] for column in layout.key]

        def typed_key(held: Any) -> dict[str, Any]:
            key_values = (held,) if len(layout.key) == 1 else held
            return {
                column: value if parse is None or value is None else parse(value)
                for column, parse, value in zip(layout.key, key_parsers, key_values, strict=True)
            }

        key = typed_key(self.key)
        if self.values is None:
            return CapturedChange(self.source, self.table, self.kind, self.position, self.commit_time, key, None)
        row: dict[str, Any] = {}
        unchanged = set()
        for column, parse, value in zip(layout.columns, layout.parsers, self.values, strict=True):
            if value is UNCHANGED_TOAST:
                unchanged.add(column)
            else:
                row[column] = value if parse is None or value is None else parse(value)
        return CapturedChange(
            self.source, self.table, self.kind, self.position, self.commit_time, key, row, frozenset(unchanged),
            None if self.moved_from is None else typed_key(self.moved_from),
        )


class Sink(Protocol):
    """What the engine (and ``replay``) needs from a sink."""

    name: str

    def prepare(self, specs: list[TableSpec]) -> None:
        """Before a run: check (and create what it may) the sink's tables for ``specs``, this sink's
        tables only. Raises when a table cannot be served (unknown model, wrong key, missing rights)."""
        ...

    def applied_position(self, source: str) -> Position:
        """Highest position durably applied for ``source`` (``Position.zero()`` if none)."""
        ...

    def apply(self, source: str, changes: list[CapturedChange]) -> Position:
        """Apply ``changes`` (commit order) atomically with the new offset; return the applied position.

        Changes at or below the stored position are skipped. Must be safe to call again with the
        same or an overlapping batch after a crash at any point.
        """
        ...

    def replay(self, source: str, change: CapturedChange) -> bool:
        """Apply one dead-lettered change again unless a newer version of its key is stored; True
        when it was applied. Leaves the stored position alone."""
        ...


@runtime_checkable
class RowSink(Sink, Protocol):
    """A sink that also takes streamed rows as output text (:class:`CapturedRow`), without parsing
    them; the engine gives every other sink :meth:`CapturedRow.typed` changes."""

    def apply_rows(self, source: str, rows: list[CapturedRow]) -> Position:
        """:meth:`Sink.apply` for text rows, with the same guarantees."""
        ...


@dataclass(frozen=True)
class TableSpec:
    """A captured table as a sink sees it, derived from the manifest and the source catalog.

    ``columns`` maps each captured column (kept or tokenised; dropped ones never appear) to its SQL
    type in the sink: the source's ``format_type`` for kept columns, ``text`` for tokenised ones.
    ``history`` asks the warehouse sink to keep every version (needed for SCD2 dimensions).
    """

    source: str
    table: str
    key: tuple[str, ...]
    columns: dict[str, str]
    sinks: tuple[str, ...]
    history: bool = False


STAGING_SCHEMA = "staging"


def staging_table(source: str, table: str) -> str:
    """Name of the warehouse mirror of ``source.table``, e.g. ``oltp_charge`` (schema ``staging``)."""
    return f"{source}_{table}"


def staging_history_table(source: str, table: str) -> str:
    return f"{source}_{table}_history"
