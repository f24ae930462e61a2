"""Column types the staging layer accepts and how values become PostgreSQL COPY text.

The type text is the one piece of staging DDL that cannot be bound as an identifier or parameter,
so only a whitelist of built-in types (as ``format_type`` prints them, and arrays of them) passes
:func:`validate_type`. Encoders turn Python values (the typed path: snapshots, Mongo-bound changes)
into COPY text fields; the streamed path hands the source's own output text through unchanged.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

COPY_NULL = "\\N"

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
