"""Landing record types: one JSON Schema per type in ``include/nosql/records.json``, used three ways.

* :func:`check_line` turns one raw landing line into a validated record or a :class:`Reject` with a
  reason code. It never keeps the raw line: a reject carries the reason, the line number, a JSON
  path and the schema keyword that failed, never a value.
* :func:`stored_schema` derives the Mongo ``$jsonSchema`` of the stored form of a record type
  (tokens must carry the ``tok_`` prefix, datetimes are BSON dates, strings keep their length
  bounds), so the server rejects what the loader would have rejected.
* The tests read the same file to generate good and bad records.

Reason codes (:data:`REASONS`): ``invalid_utf8``, ``bad_json``, ``not_an_object``,
``unknown_record_type``, ``missing_field``, ``wrong_type``, ``unknown_field``,
``oversize_field`` (a string, array or object past its bound), ``invalid_value`` (enum, pattern,
range, an unparseable datetime or IP address), ``oversize_record`` (a line longer than
``max_line_bytes``), ``truncated_line`` (a last line without its newline: the producer was cut
off), ``pii_in_field`` (personal data in a field that is not free text: it cannot be made safe
without guessing, so the record is not stored).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from paydata.settings import REPO_ROOT

RECORDS_FILE = REPO_ROOT / "include" / "nosql" / "records.json"

REASONS = (
    "invalid_utf8", "bad_json", "not_an_object", "unknown_record_type", "missing_field", "wrong_type",
    "unknown_field", "oversize_field", "invalid_value", "oversize_record", "truncated_line", "pii_in_field",
)
_KEYWORD_REASONS = {
    "required": "missing_field",
    "type": "wrong_type",
    "additionalProperties": "unknown_field",
    "maxLength": "oversize_field",
    "maxItems": "oversize_field",
    "maxProperties": "oversize_field",
}
# When one record breaks several rules, report the most telling one first.
_REASON_ORDER = {reason: rank for rank, reason in enumerate(
    ("missing_field", "wrong_type", "unknown_field", "oversize_field", "invalid_value"))}


class RecordDefinitionError(ValueError):
    """``records.json`` is malformed."""


@dataclass(frozen=True)
class Reject:
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class RecordType:
    name: str
    collection: str
    key: tuple[str, ...]
    schema: dict[str, Any]
    validator: Draft202012Validator
    stores: dict[tuple[str, ...], str]  # field path -> x-store (token:<domain>, datetime, scrub, drop)
    is_valid: Any  # compiled fast check (compile_check): True exactly when the validator finds no error


@dataclass(frozen=True)
class RecordTypes:
    types: dict[str, RecordType]
    max_line_bytes: int
    ignored_kinds: frozenset[str]

    def __getitem__(self, name: str) -> RecordType:
        return self.types[name]


def _stores(schema: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    found = {}
    for name, sub in schema.get("properties", {}).items():
        path = (*prefix, name)
        if "x-store" in sub:
            found[path] = sub["x-store"]
        if sub.get("type") == "object":
            found.update(_stores(sub, path))
    return found


def load_record_types(path: Path = RECORDS_FILE) -> RecordTypes:
    """Parse and check ``records.json``; raises :class:`RecordDefinitionError` if malformed."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordDefinitionError(f"cannot read {path}: {exc}") from exc
    types = {}
    for name, spec in data.get("types", {}).items():
        schema = spec.get("schema")
        if not isinstance(schema, dict) or schema.get("type") != "object" or not spec.get("key"):
            raise RecordDefinitionError(f"{path}: type {name!r} needs an object 'schema' and a 'key'")
        Draft202012Validator.check_schema(schema)
        stores = _stores(schema)
        for store in stores.values():
            kind, _, domain = store.partition(":")
            if kind not in ("token", "datetime", "scrub", "drop") or (kind == "token") != bool(domain):
                raise RecordDefinitionError(f"{path}: type {name!r} has an unknown x-store {store!r}")
        missing_keys = [k for k in spec["key"] if k not in schema.get("required", [])]
        if missing_keys:
            raise RecordDefinitionError(f"{path}: type {name!r} key fields {missing_keys} must be required")
        types[name] = RecordType(name, spec["collection"], tuple(spec["key"]), schema,
                                 Draft202012Validator(schema), stores, compile_check(schema))
    if not types:
        raise RecordDefinitionError(f"{path}: no record types")
    return RecordTypes(types, int(data["max_line_bytes"]), frozenset(data.get("ignored_kinds", ())))


@cache
def record_types() -> RecordTypes:
    """The record types of ``include/nosql/records.json`` (parsed once per process)."""
    return load_record_types()


def _reason(error) -> tuple[str, str]:
    reason = _KEYWORD_REASONS.get(error.validator, "invalid_value")
    where = "/".join(str(part) for part in error.absolute_path) or "$"
    detail = f"{where}:{error.validator}"
    if error.validator == "required":
        # The missing name comes from the schema (never from the data), so it is safe to name.
        declared = error.schema.get("properties", {})
        missing = [name for name in error.validator_value if name not in error.instance and name in declared]
        if missing:
            detail = f"{where}/{missing[0]}:required"
    return reason, detail


_COMPILED_KEYWORDS = frozenset({
    "type", "required", "properties", "additionalProperties", "maxLength", "minLength", "pattern", "enum",
    "const", "minimum", "maximum", "maxProperties", "format", "x-store",
})
_PY_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
             "object": (dict,), "array": (list,), "null": (type(None),)}


def compile_check(schema: dict[str, Any]):
    """A fast ``value -> bool`` for the JSON Schema keywords the record schemas use.

    It answers only "valid or not": a record it rejects goes to the jsonschema validator for the
    exact error, so jsonschema stays the reference and this is only the common-case shortcut
    (about 20x faster per record). ``format`` is an annotation in draft 2020-12 and not checked
    here either; the loader parses timestamps itself. Raises RecordDefinitionError for a keyword
    it does not implement, so a schema cannot silently be checked less strictly than declared.
    """
    import re

    unknown = set(schema) - _COMPILED_KEYWORDS
    if unknown:
        raise RecordDefinitionError(f"record schemas may use {sorted(_COMPILED_KEYWORDS)}; got {sorted(unknown)}")
    checks = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        allowed = tuple(t for name in names for t in _PY_TYPES[name])
        integer_only = "integer" in names and "number" not in names
        floats_ok = "number" in names

        def check_type(value, allowed=allowed, integer_only=integer_only, floats_ok=floats_ok, names=names):
            if isinstance(value, bool):
                return "boolean" in names
            if integer_only and isinstance(value, float):
                return value.is_integer()
            return isinstance(value, allowed) or (floats_ok and isinstance(value, int))

        checks.append(check_type)
    if "enum" in schema:
        options = schema["enum"]
        checks.append(lambda value: any(value == o and type(value) is type(o) for o in options))
    if "const" in schema:
        const = schema["const"]
        checks.append(lambda value: value == const and type(value) is type(const))
    if "maxLength" in schema or "minLength" in schema or "pattern" in schema:
        low, high = schema.get("minLength", 0), schema.get("maxLength", float("inf"))
        pattern = re.compile(schema["pattern"]) if "pattern" in schema else None
        checks.append(lambda value: not isinstance(value, str) or (
            low <= len(value) <= high and (pattern is None or pattern.search(value) is not None)))
    if "minimum" in schema or "maximum" in schema:
        low, high = schema.get("minimum", float("-inf")), schema.get("maximum", float("inf"))
        checks.append(lambda value: isinstance(value, bool) or not isinstance(value, (int, float))
                      or low <= value <= high)
    if {"properties", "required", "additionalProperties", "maxProperties"} & set(schema):
        properties = {name: compile_check(sub) for name, sub in schema.get("properties", {}).items()}
        required = tuple(schema.get("required", ()))
        closed = schema.get("additionalProperties") is False
        max_properties = schema.get("maxProperties", float("inf"))

        def check_object(value):
            if not isinstance(value, dict):
                return True
            if len(value) > max_properties or any(name not in value for name in required):
                return False
            for name, item in value.items():
                check = properties.get(name)
                if check is None:
                    if closed:
                        return False
                elif not check(item):
                    return False
            return True

        checks.append(check_object)
    return lambda value: all(check(value) for check in checks)


def validate(record_type: RecordType, record: dict[str, Any]) -> Reject | None:
    """None if ``record`` matches its schema, else the :class:`Reject` of its most telling error."""
    if record_type.is_valid(record):
        return None
    errors = list(record_type.validator.iter_errors(record))
    if not errors:
        return None
    reason, detail = min((_reason(error) for error in errors), key=lambda item: (_REASON_ORDER[item[0]], item[1]))
    return Reject(reason, detail)


def check_line(raw: bytes, kind: str, types: RecordTypes, *, terminated: bool = True) -> tuple[str, dict] | Reject:
    """Decode and validate one landing line (without its newline).

    ``kind`` is the record type of the file (its folder); a record may name its own type in a
    ``type`` field. ``terminated`` is False for a last line that had no newline. Returns
    ``(type name, record)`` or a :class:`Reject`; never raises for bad input.
    """
    if len(raw) > types.max_line_bytes:
        return Reject("oversize_record", f"{len(raw)} bytes > {types.max_line_bytes}")
    if not terminated:
        return Reject("truncated_line", f"{len(raw)} bytes without a newline at end of file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Reject("invalid_utf8", f"byte {exc.start}")
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        return Reject("bad_json", f"column {getattr(exc, 'colno', 0)}")
    if not isinstance(record, dict):
        return Reject("not_an_object", type(record).__name__)
    name = record.get("type", kind)
    record_type = types.types.get(name) if isinstance(name, str) else None
    if record_type is None:
        return Reject("unknown_record_type", "type field" if "type" in record else "file kind")
    rejected = validate(record_type, record)
    if rejected is not None:
        return rejected
    record.pop("type", None)
    return name, record


# --- the stored form, for the server-side validators -----------------------------------------

_BSON_TYPES = {"string": "string", "integer": ["int", "long"], "number": ["int", "long", "double"],
               "boolean": "bool", "object": "object", "array": "array", "null": "null"}
_KEPT_BOUNDS = ("maxLength", "minLength", "maxItems", "minimum", "maximum", "enum", "pattern", "maxProperties")


def _bson_type(json_type: Any) -> Any:
    names = json_type if isinstance(json_type, list) else [json_type]
    out: list[str] = []
    for name in names:
        mapped = _BSON_TYPES[name]
        out += mapped if isinstance(mapped, list) else [mapped]
    return out[0] if len(out) == 1 else out


def _stored_property(spec: dict[str, Any]) -> dict[str, Any] | None:
    store = spec.get("x-store", "")
    nullable = isinstance(spec.get("type"), list) and "null" in spec["type"]
    if store == "drop":
        return None
    if store.startswith("token:"):
        return {"bsonType": ["string", "null"] if nullable else "string", "pattern": "^tok_", "maxLength": 100}
    if store == "datetime":
        return {"bsonType": ["date", "null"] if nullable else "date"}
    if "const" in spec:
        return None
    if "enum" in spec and "type" not in spec:
        return {"enum": list(spec["enum"])}
    out: dict[str, Any] = {"bsonType": _bson_type(spec["type"])}
    for bound in _KEPT_BOUNDS:
        if bound in spec and not (bound == "pattern" and store == "scrub"):
            out[bound] = spec[bound]
    if spec.get("type") == "object":
        out.update(stored_schema(spec, top_level=False))
    return out


def stored_schema(schema: dict[str, Any], *, top_level: bool = True) -> dict[str, Any]:
    """The ``$jsonSchema`` body (without the wrapper) for the stored form of a record schema.

    Properties keep their bounds; ``token:`` fields become ``^tok_`` strings, ``datetime`` fields
    BSON dates, ``drop`` and the ``type`` marker disappear. ``additionalProperties`` is left open
    at the top level, where the collection adds its own fields.
    """
    properties = {}
    for name, spec in schema.get("properties", {}).items():
        stored = _stored_property(spec)
        if stored is not None:
            properties[name] = stored
    out: dict[str, Any] = {"bsonType": "object", "properties": properties}
    required = [name for name in schema.get("required", []) if name in properties]
    if required:
        out["required"] = required
    if not top_level and schema.get("additionalProperties") is False:
        out["additionalProperties"] = False
    return out


def _collection_validator(collection: str, types: RecordTypes) -> dict[str, Any]:
    """The validator of an ingest collection, built around the stored form of its record types."""
    from paydata.nosql.documents import collection_validator

    return collection_validator(collection, types)


def with_derived_validators(definitions: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``definitions`` with every ``"validator": "derived"`` replaced by the derived ``$jsonSchema``."""
    types = None
    out = {}
    for name, definition in definitions.items():
        if definition.get("validator") == "derived":
            types = types or record_types()
            definition = {**definition, "validator": {"$jsonSchema": _collection_validator(name, types)}}
        out[name] = definition
    return out
