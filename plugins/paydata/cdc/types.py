"""Convert PostgreSQL text-format column values (as pgoutput sends them) into Python values.

pgoutput sends every column through the type's output function, i.e. the same text ``psql``
shows, rendered with the walsender session's settings. The conversions below assume the
server defaults the project relies on: ``DateStyle`` ISO, ``bytea_output`` hex (escape is also
accepted), ``IntervalStyle`` irrelevant (intervals stay text), UTF-8 server encoding.

Guarantees:

* :func:`convert_text` returns the Python value for the OIDs in :data:`TEXT_CONVERTERS`
  (bool, integers, numeric -> ``Decimal``, floats, text types, bytea -> ``bytes``, date,
  time, timestamp -> naive ``datetime``, timestamptz -> aware ``datetime``, uuid, json/jsonb
  -> parsed JSON, ``"char"``, and one-dimensional or nested arrays of those as lists).
* Any other OID (enums, domains, intervals, geometric types, ...) falls back to the text itself.
* Text that does not parse as the declared type raises :class:`ConversionError` naming the
  type and the offending text; nothing is silently coerced.

``infinity``/``-infinity`` dates and timestamps map to ``date.max``/``date.min`` and
``datetime.max``/``datetime.min`` (UTC-aware for timestamptz) because Python has no infinite
date; BC dates and years above 9999 raise :class:`ConversionError`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any


class ConversionError(ValueError):
    """A text value could not be converted to the Python type of its PostgreSQL column type."""


# Type OIDs from pg_type.dat; stable across PostgreSQL versions.
BOOL = 16
BYTEA = 17
CHAR = 18
NAME = 19
INT8 = 20
INT2 = 21
INT4 = 23
TEXT = 25
OID = 26
JSON = 114
FLOAT4 = 700
FLOAT8 = 701
BPCHAR = 1042
VARCHAR = 1043
DATE = 1082
TIME = 1083
TIMESTAMP = 1114
TIMESTAMPTZ = 1184
NUMERIC = 1700
UUID = 2950
JSONB = 3802


def _bool(text: str) -> bool:
    if text == "t":
        return True
    if text == "f":
        return False
    raise ValueError("expected 't' or 'f'")


def _int(text: str) -> int:
    # int() accepts '1_000' and surrounding whitespace, which PostgreSQL never emits.
    if not text or not (text.isdigit() or (text[0] == "-" and text[1:].isdigit())):
        raise ValueError("not an integer literal")
    return int(text)


def _numeric(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError("not a numeric literal") from None


def _float(text: str) -> float:
    return float(text)


def _str(text: str) -> str:
    return text


def _bytea(text: str) -> bytes:
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    return _bytea_escape(text)


def _bytea_escape(text: str) -> bytes:
    """Decode ``bytea_output = escape``: printable ASCII as is, ``\\\\`` and ``\\ooo`` octal."""
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != "\\":
            code = ord(ch)
            if code > 0x7E:
                raise ValueError("non-ASCII character in escape-format bytea")
            out.append(code)
            i += 1
        elif text.startswith("\\\\", i):
            out.append(0x5C)
            i += 2
        else:
            octal = text[i + 1 : i + 4]
            if len(octal) != 3 or any(c not in "01234567" for c in octal):
                raise ValueError("bad escape sequence in bytea")
            out.append(int(octal, 8))
            i += 4
    return bytes(out)


def _check_era(text: str) -> None:
    if text.endswith(" BC"):
        raise ValueError("BC dates are not representable in Python")


def _date(text: str) -> date:
    if text == "infinity":
        return date.max
    if text == "-infinity":
        return date.min
    _check_era(text)
    return date.fromisoformat(text)


def _time(text: str) -> time:
    return time.fromisoformat(text)


def _timestamp(text: str) -> datetime:
    if text == "infinity":
        return datetime.max
    if text == "-infinity":
        return datetime.min
    _check_era(text)
    if len(text) < 19 or text[10] != " ":
        raise ValueError("expected 'YYYY-MM-DD HH:MM:SS[.ffffff]'")
    value = datetime.fromisoformat(text)
    if value.tzinfo is not None:
        raise ValueError("timestamp without time zone carries an offset")
    return value


def _timestamptz(text: str) -> datetime:
    if text == "infinity":
        return datetime.max.replace(tzinfo=UTC)
    if text == "-infinity":
        return datetime.min.replace(tzinfo=UTC)
    _check_era(text)
    # ISO output ends in '+HH', '+HH:MM' or, for historic zones, '+HH:MM:SS'.
    sign_at = max(text.rfind("+"), text.rfind("-"))
    if sign_at < 19 or len(text) < 22 or text[10] != " ":
        raise ValueError("expected 'YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM[:SS]]'")
    parts = text[sign_at + 1 :].split(":")
    if len(parts) > 3 or not all(len(p) == 2 and p.isdigit() for p in parts):
        raise ValueError("malformed UTC offset")
    seconds = int(parts[0]) * 3600 + (int(parts[1]) * 60 if len(parts) > 1 else 0)
    seconds += int(parts[2]) if len(parts) > 2 else 0
    offset = timedelta(seconds=-seconds if text[sign_at] == "-" else seconds)
    local = datetime.fromisoformat(text[:sign_at])
    return local.replace(tzinfo=UTC if not seconds else timezone(offset))


def _uuid(text: str) -> uuid.UUID:
    return uuid.UUID(text)


def _json(text: str) -> Any:
    return json.loads(text)


TEXT_CONVERTERS: dict[int, Callable[[str], Any]] = {
    BOOL: _bool,
    BYTEA: _bytea,
    CHAR: _str,
    NAME: _str,
    INT8: _int,
    INT2: _int,
    INT4: _int,
    OID: _int,
    TEXT: _str,
    JSON: _json,
    FLOAT4: _float,
    FLOAT8: _float,
    BPCHAR: _str,
    VARCHAR: _str,
    DATE: _date,
    TIME: _time,
    TIMESTAMP: _timestamp,
    TIMESTAMPTZ: _timestamptz,
    NUMERIC: _numeric,
    UUID: _uuid,
    JSONB: _json,
}

# Array type OID -> element type OID (pg_type.typarray), for the element types above.
ARRAY_ELEMENT_TYPES: dict[int, int] = {
    1000: BOOL,
    1001: BYTEA,
    1002: CHAR,
    1003: NAME,
    1016: INT8,
    1005: INT2,
    1007: INT4,
    1028: OID,
    1009: TEXT,
    199: JSON,
    1021: FLOAT4,
    1022: FLOAT8,
    1014: BPCHAR,
    1015: VARCHAR,
    1182: DATE,
    1183: TIME,
    1115: TIMESTAMP,
    1185: TIMESTAMPTZ,
    1231: NUMERIC,
    2951: UUID,
    3807: JSONB,
}


def _parse_array(text: str, element: Callable[[str], Any]) -> list[Any]:
    """Parse PostgreSQL array text (``{a,"b c",NULL,{1,2}}``) into nested lists.

    Quoted elements may contain ``\\"`` and ``\\\\``; an unquoted ``NULL`` is ``None``. A
    leading dimension decoration such as ``[0:2]=`` is skipped (Python lists start at 0).
    """
    if text.startswith("["):
        eq = text.find("=")
        if eq < 0:
            raise ValueError("malformed array dimension decoration")
        text = text[eq + 1 :]
    if not text.startswith("{"):
        raise ValueError("array literal must start with '{'")
    stack: list[list[Any]] = []
    result: list[Any] | None = None
    i = 0
    n = len(text)
    expect_value = True
    while i < n:
        ch = text[i]
        if ch == "{":
            if not expect_value:
                raise ValueError(f"unexpected '{{' at offset {i}")
            new: list[Any] = []
            if stack:
                stack[-1].append(new)
            stack.append(new)
            i += 1
        elif ch == "}":
            if not stack:
                raise ValueError(f"unbalanced '}}' at offset {i}")
            if expect_value and stack[-1]:
                raise ValueError(f"missing element before '}}' at offset {i}")
            done = stack.pop()
            if not stack:
                result = done
                i += 1
                break
            expect_value = False
            i += 1
        elif ch == ",":
            if expect_value or not stack:
                raise ValueError(f"unexpected ',' at offset {i}")
            expect_value = True
            i += 1
        elif ch == '"':
            if not expect_value:
                raise ValueError(f"unexpected '\"' at offset {i}")
            chars: list[str] = []
            i += 1
            while True:
                if i >= n:
                    raise ValueError("unterminated quoted array element")
                c = text[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise ValueError("dangling backslash in array element")
                    chars.append(text[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
            stack[-1].append(element("".join(chars)))
            expect_value = False
        else:
            if not expect_value or not stack:
                raise ValueError(f"unexpected {ch!r} at offset {i}")
            start = i
            while i < n and text[i] not in ",}":
                i += 1
            token = text[start:i]
            stack[-1].append(None if token == "NULL" else element(token))
            expect_value = False
    if result is None or i != n:
        raise ValueError("malformed array literal")
    return result


# Types whose Python value is the text itself; decoders skip the call for them.
_TEXT_AS_IS = frozenset({CHAR, NAME, TEXT, BPCHAR, VARCHAR})


def parser_for(type_oid: int) -> Callable[[str], Any] | None:
    """Return the raw text -> Python function for ``type_oid``, or None when the text is the value.

    For hot loops: the function raises ValueError/TypeError/IndexError on bad text without
    naming the type, so callers must wrap those into a :class:`ConversionError` themselves
    (or use :func:`converter_for`). Unknown OIDs return None (the text is kept).
    """
    if type_oid in _TEXT_AS_IS:
        return None
    scalar = TEXT_CONVERTERS.get(type_oid)
    if scalar is not None:
        return scalar
    element_oid = ARRAY_ELEMENT_TYPES.get(type_oid)
    if element_oid is not None:
        element = TEXT_CONVERTERS[element_oid]
        return lambda text: _parse_array(text, element)
    return None


def converter_for(type_oid: int) -> Callable[[str], Any]:
    """Return the text -> Python function for ``type_oid`` (identity for unknown OIDs).

    The returned function raises :class:`ConversionError` on text that does not parse.
    """
    parse = parser_for(type_oid)
    return _str if parse is None else _guarded(type_oid, parse)


PARSE_ERRORS = (ValueError, TypeError, IndexError)
"""What a :func:`parser_for` function raises on text that does not parse."""


def conversion_error(type_oid: int, text: str, exc: BaseException) -> ConversionError:
    """The error :func:`converter_for` raises for ``text`` that failed with ``exc``."""
    return ConversionError(f"cannot convert {text[:80]!r} to type OID {type_oid}: {exc}")


def _guarded(type_oid: int, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except PARSE_ERRORS as exc:
            raise conversion_error(type_oid, text, exc) from None

    return convert


def convert_text(type_oid: int, text: str) -> Any:
    """Convert one text-format value of a column of type ``type_oid``; see the module docstring."""
    return converter_for(type_oid)(text)
