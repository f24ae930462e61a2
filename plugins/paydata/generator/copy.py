"""COPY helpers: rows to Postgres text-format buffers, and statements from ``include/sql/sources/queries/generator``.

The text format is the cheapest to build in Python: one ``\\t``-joined line per row, ``\\N`` for
NULL, ``\\\\x<hex>`` for bytea, with backslash, tab, newline and carriage return escaped in text.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Sequence

from paydata.sql import load_sql

_TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def statement_text(name: str) -> str:
    """The text of ``include/sql/sources/queries/generator/<name>.sql``; raises FileNotFoundError naming the file."""
    return load_sql(f"sources/queries/generator/{name}.sql")


def statement(name: str, **identifiers: str | Sequence[str]):
    """A statement with ``{placeholders}`` bound as quoted identifiers (a sequence becomes a list)."""
    from psycopg2 import sql

    bound = {}
    for key, value in identifiers.items():
        if isinstance(value, str):
            bound[key] = sql.Identifier(value)
        else:
            bound[key] = sql.SQL(", ").join(sql.Identifier(part) for part in value)
    return sql.SQL(statement_text(name)).format(**bound)


def _text(value: str) -> str:
    return value.translate(_TEXT_ESCAPES)


def _bytes(value: bytes) -> str:
    return "\\\\x" + value.hex()


def _moment(value: dt.date) -> str:
    return value.isoformat()


# Exact-type dispatch first: far cheaper than an isinstance chain on the hot path.
_FORMATTERS = {
    str: _text, int: int.__repr__, bytes: _bytes, dt.datetime: _moment, dt.date: _moment,
    bool: lambda value: "t" if value else "f", type(None): lambda _value: "\\N",
}


def copy_value(value: object) -> str:
    """One value in COPY text format. Raises TypeError for a type COPY text cannot carry here."""
    formatter = _FORMATTERS.get(type(value))
    if formatter is not None:
        return formatter(value)
    return _copy_value_slow(value)


def _copy_value_slow(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.translate(_TEXT_ESCAPES)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\\\x" + bytes(value).hex()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    raise TypeError(f"cannot write a {type(value).__name__} into a COPY buffer")


def copy_buffer(rows: Iterable[Sequence[object]]) -> io.StringIO:
    """The rows as one in-memory COPY text buffer, positioned at its start."""
    buffer = io.StringIO()
    write = buffer.write
    formatters = _FORMATTERS
    slow = _copy_value_slow
    for row in rows:
        write("\t".join([formatters[type(value)](value) if type(value) in formatters else slow(value)
                          for value in row]))
        write("\n")
    buffer.seek(0)
    return buffer


# Bytes handed to libpq per read of the buffer: big reads keep the per-call overhead negligible.
COPY_READ_SIZE = 1 << 20


def copy_into(cursor, table: str, columns: Sequence[str], buffer: io.StringIO | io.BytesIO) -> int:
    """COPY ``buffer`` (COPY text, str or UTF-8 bytes) into ``table (columns)``; returns the rows written.

    Identity columns take the values given (COPY behaves like ``OVERRIDING SYSTEM VALUE``);
    constraints, foreign keys and row triggers all apply, so a bad row aborts the transaction
    with the constraint's error.
    """
    buffer.seek(0)
    cursor.copy_expert(statement("copy_from_stdin", table=table, columns=list(columns)).as_string(cursor), buffer,
                       size=COPY_READ_SIZE)
    return cursor.rowcount
