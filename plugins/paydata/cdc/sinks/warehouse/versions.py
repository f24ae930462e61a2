"""Folding a batch into the rows to stage: the versions of each key, merged, then encoded as COPY text.

Columns a change does not carry (unchanged TOAST, every non-key column of a delete) are taken from
the key's previous version in the batch (the old key's, for the update half of a key change); what
is still missing is named in the row's ``_unchanged`` (and ``_moved_from``) and filled from the
stored row in SQL. A table with history stages every version; a mirror-only table the last per key.
The rows are cut into chunks of COPY text, encoded one at a time as the loader asks for the next.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from paydata.cdc.model import (
    CapturedChange,
    CapturedRow,
)
from paydata.cdc.pgoutput import UNCHANGED_TOAST
from paydata.cdc.sinks.warehouse.copytext import (
    COPY_NULL,
    WarehouseSinkError,
    _encode_integer_values,
    _encode_memoised_values,
    _escape,
    _text_array_literal,
)
from paydata.cdc.sinks.warehouse.plan import (
    ROW_KINDS,
    _commit_lsn_of,
    _commit_time_of,
    _encodes,
    _index_in_txn_of,
    _position_of,
    _TablePlan,
)
from paydata.speedups import ACCELERATOR

# What a loaded chunk still needs from the rows stored before the batch (bit flags).
FILL_NONE = 0
FILL_BY_KEY = 1  # columns a row lacks come from the row stored under its own key
FILL_BY_OLD_KEY = 2  # ... from the row stored under the old key of a key change (``_moved_from``)


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


def _encode_versions(
    plan: _TablePlan, versions: list[tuple[CapturedChange, dict[str, Any], str, dict[str, Any] | None]]
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


@dataclass(frozen=True)
class EncodedChunk:
    """Up to ``rows_per_chunk`` staged rows of one table segment, as COPY text for the loader."""

    plan: _TablePlan
    text: str
    needs_stored_values: int  # FILL_* flags
    name: str  # the temporary table it is copied into


@dataclass(frozen=True)
class TruncateStep:
    """A TRUNCATE between two segments of its table: every live row is tombstoned at its position."""

    plan: _TablePlan
    change: CapturedChange | CapturedRow


def encoded_chunks(
    plans: Mapping[tuple[str, str], _TablePlan],
    source: str,
    pending: list[CapturedChange] | list[CapturedRow],
    rows_per_chunk: int,
    *,
    text_rows: bool,
) -> Iterator[EncodedChunk | TruncateStep]:
    """The steps that stage ``pending`` (in position order), encoded lazily: one chunk per ``next``.

    ``text_rows`` says whether ``pending`` holds :class:`CapturedRow` (the source's output text) or
    :class:`CapturedChange` (typed values); both become the same staged rows and statements.
    """
    time_texts: dict[Any, str] = {}
    prefix = "cdc_rows" if text_rows else "cdc_batch"
    for number, (table, work) in enumerate(_segments(pending)):
        plan = plans[(source, table)]
        if not isinstance(work, list):
            yield TruncateStep(plan, work)
            continue
        versions = _row_versions(plan, work) if text_rows else _versions(plan, work)
        for part, start in enumerate(range(0, len(versions), rows_per_chunk)):
            chunk = versions[start : start + rows_per_chunk]
            if text_rows:
                text, needs_stored_values = _encode_row_versions(plan, chunk, time_texts)
            else:
                text, needs_stored_values = _encode_versions(plan, chunk)
            yield EncodedChunk(plan, text, needs_stored_values, f"{prefix}_{number}_{part}")


def encode_segment(plan: _TablePlan, changes: list[CapturedChange]) -> tuple[str, int]:
    """COPY text for one table segment of ``changes`` and whether any row still needs the stored row.

    Each row is the key's complete version as far as this batch knows it: columns a change does
    not carry are taken from the key's previous change in the batch, and the rest are listed in
    the row's ``_unchanged`` array. A table with history gets a row per change; a table without
    only gets the last version of each key (the only one its mirror keeps), so the rows' keys
    are unique. Encoding runs column by column so that each column's type is checked once for
    the whole batch.
    """
    return _encode_versions(plan, _versions(plan, changes))
