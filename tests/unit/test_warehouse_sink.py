"""WarehouseSink pieces that need no database: COPY text encoding, the type whitelist, input checks."""

from __future__ import annotations

import gc
import io
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from paydata.cdc.model import CapturedChange, Position, TableSpec
from paydata.cdc.pgoutput import UNCHANGED_TOAST
from paydata.cdc.sinks.warehouse import WarehouseSink, WarehouseSinkError
from paydata.cdc.sinks.warehouse.copytext import (
    copy_array,
    copy_json,
    copy_text,
    encoder_for_type,
    validate_type,
    values_encoder_for_type,
)
from paydata.cdc.sinks.warehouse.plan import _TablePlan
from paydata.cdc.sinks.warehouse.versions import encode_segment


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "\\N"),
        (True, "t"),
        (False, "f"),
        (0, "0"),
        (-9_223_372_036_854_775_808, "-9223372036854775808"),
        (Decimal("12345.0000000001"), "12345.0000000001"),
        (Decimal("-0.10"), "-0.10"),
        (Decimal("NaN"), "NaN"),
        (Decimal("-Infinity"), "-Infinity"),
        (1.5, "1.5"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        ("plain", "plain"),
        ("", ""),
        ("tab\there", "tab\\there"),
        ("new\nline\r\n", "new\\nline\\r\\n"),
        ("back\\slash", "back\\\\slash"),
        ("\\N", "\\\\N"),  # the text "\N" must not turn into NULL
        ("Zürich \N{SNOWMAN} 東京", "Zürich \N{SNOWMAN} 東京"),
        (b"", "\\\\x"),
        (b"\x00\x01\xff\\", "\\\\x0001ff5c"),
        (bytearray(b"\x10"), "\\\\x10"),
        (date(1999, 12, 31), "1999-12-31"),
        (datetime(2024, 2, 29, 23, 59, 59, 123456), "2024-02-29T23:59:59.123456"),
        (datetime(2024, 1, 1, 12, tzinfo=UTC), "2024-01-01T12:00:00+00:00"),
        (datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=-5, minutes=-30))), "2024-01-01T12:00:00-05:30"),
        (time(8, 30, 1), "08:30:01"),
        (timedelta(days=2, seconds=3, microseconds=4), "2 days 3000004 microseconds"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        ({"a": "x\ty", "b": [1, None]}, '{"a":"x\\\\ty","b":[1,null]}'),
        (["a", {"b": "ü"}], '["a",{"b":"ü"}]'),
    ],
)
def test_copy_text_encodes_each_type(value, expected):
    assert copy_text(value) == expected


@pytest.mark.parametrize("value", [object(), {1, 2}, UNCHANGED_TOAST, complex(1, 2), "nul\x00inside"])
def test_copy_text_rejects_what_postgres_cannot_store(value):
    with pytest.raises(WarehouseSinkError):
        copy_text(value)


def test_copy_json_serialises_strings_and_numbers_as_json():
    assert copy_json("text") == '"text"'
    assert copy_json(None) == "\\N"
    assert copy_json({"n": Decimal("2"), "at": date(2024, 1, 2)}) == '{"n":2,"at":"2024-01-02"}'
    assert copy_json({"line": "a\nb"}) == '{"line":"a\\\\nb"}'
    with pytest.raises(WarehouseSinkError, match="not JSON serialisable"):
        copy_json({"x": object()})


def test_copy_array_quotes_every_element():
    assert copy_array(["a,b", 'q"', None, "back\\slash", "NULL"]) == (
        '{"a,b","q\\\\"",NULL,"back\\\\\\\\slash","NULL"}'
    )
    assert copy_array([[1, 2], [3, None]]) == '{{"1","2"},{"3",NULL}}'
    assert copy_array([b"\x01"]) == '{"\\\\\\\\x01"}'
    assert copy_array(None) == "\\N"
    with pytest.raises(WarehouseSinkError, match="needs a list"):
        copy_array("not a list")


def test_encoders_follow_the_column_type():
    assert encoder_for_type("jsonb") is copy_json
    assert encoder_for_type("text[]") is copy_array
    assert encoder_for_type("numeric(20,10)") is copy_text


@pytest.mark.parametrize(
    ("type_name", "values"),
    [
        ("bigint", [1, None, -5, True, Decimal("3")]),  # a bool or Decimal leaves the fast path
        ("text", ["a", None, "t\tb", "ü"]),
        ("character(3)", ["EUR", None]),
        ("boolean", [True, False, None, 1]),
        ("timestamp with time zone", [datetime(2024, 1, 1, tzinfo=UTC), None, datetime(2024, 1, 1, tzinfo=UTC)]),
        ("date", [date(2024, 1, 1), None, "2024-01-02"]),
        ("jsonb", ["x", None, {"a": 1}]),
        ("numeric(20,10)", [Decimal("1.5"), None, 2]),
    ],
)
def test_column_encoders_match_the_value_encoders(type_name, values):
    encode_one = encoder_for_type(type_name)
    assert values_encoder_for_type(type_name)(list(values)) == [encode_one(value) for value in values]


def test_column_encoder_rejects_nul_in_text():
    with pytest.raises(WarehouseSinkError, match="NUL"):
        values_encoder_for_type("text")(["fine", "bad\x00"])


@pytest.mark.parametrize(
    "type_name",
    [
        "bigint", "integer", "smallint", "numeric", "numeric(20,10)", "character(3)", "character varying(255)",
        "varchar(10)", "text", "timestamp with time zone", "timestamp(3) without time zone", "timestamptz",
        "date", "inet", "bytea", "boolean", "jsonb", "uuid", "double precision", "text[]", "bigint[][]",
        "  Timestamp  With  Time  Zone ",
    ],
)
def test_type_whitelist_accepts_format_type_names(type_name):
    assert validate_type(type_name) == " ".join(type_name.lower().split())


@pytest.mark.parametrize(
    "type_name",
    [
        "", "bigint; DROP TABLE staging.cdc_offsets", "text) --", "charge_status", "public.my_enum",
        "numeric(20,10", "text[1]", "serial", "integer primary key", 'text COLLATE "C"', "bigint\nnot null",
        None, 42,
    ],
)
def test_type_whitelist_rejects_junk(type_name):
    with pytest.raises(WarehouseSinkError):
        validate_type(type_name)


def refusing_factory():
    raise AssertionError("bad input must be refused before a connection is opened")


def spec(**overrides):
    fields = {
        "source": "oltp", "table": "charge", "key": ("charge_id",),
        "columns": {"charge_id": "bigint", "amount": "bigint"}, "sinks": ("warehouse",),
    }
    return TableSpec(**(fields | overrides))


@pytest.mark.parametrize(
    ("bad_spec", "message"),
    [
        (spec(columns={"charge_id": "bigint", "amount": "money; drop"}), "amount"),
        (spec(key=("missing",)), "not among its captured columns"),
        (spec(key=()), "has no key"),
        (spec(columns={"charge_id": "bigint", "_commit_lsn": "bigint"}), "collides"),
        (spec(table="t" * 60), "longer than 63 bytes"),
        (spec(columns={}), "no columns"),
    ],
)
def test_prepare_refuses_bad_specs_before_connecting(bad_spec, message):
    with pytest.raises(WarehouseSinkError, match=message):
        WarehouseSink(refusing_factory).prepare([bad_spec])


def test_apply_refuses_a_table_without_spec_before_connecting():
    sink = WarehouseSink(refusing_factory)
    change = CapturedChange("oltp", "charge", "insert", Position(1, 0), datetime.now(UTC),
                            {"charge_id": 1}, {"charge_id": 1, "amount": 2})
    with pytest.raises(WarehouseSinkError, match="no warehouse spec for oltp.charge"):
        sink.apply("oltp", [change])
    assert gc.isenabled()  # the collector, paused while a batch is staged, is back on after an error


def test_apply_leaves_a_disabled_collector_disabled():
    sink = WarehouseSink(refusing_factory)
    gc.disable()
    try:
        with pytest.raises(WarehouseSinkError):
            sink.apply("oltp", [object()])
        assert not gc.isenabled()
    finally:
        gc.enable()


def encoded_rows(history, changes):
    plan = _TablePlan.build(
        spec(columns={"charge_id": "bigint", "amount": "bigint", "notes": "text"}, history=history)
    )
    text, needs_stored_values = encode_segment(plan, changes)
    return [line.split("\t") for line in io.StringIO(text).read().splitlines()], needs_stored_values


AT = datetime(2024, 1, 1, tzinfo=UTC)
STAMP = "2024-01-01T00:00:00+00:00"
MERGE_CHANGES = [
    CapturedChange("oltp", "charge", "insert", Position(5, 0), AT, {"charge_id": 1},
                   {"charge_id": 1, "amount": 1, "notes": "long\tnote"}),
    CapturedChange("oltp", "charge", "update", Position(5, 1), AT, {"charge_id": 1},
                   {"charge_id": 1, "amount": 2}, frozenset({"notes"})),
    CapturedChange("oltp", "charge", "update", Position(6, 0), AT, {"charge_id": 2},
                   {"charge_id": 2, "amount": 3}, frozenset({"notes"})),
    CapturedChange("oltp", "charge", "delete", Position(7, 0), AT, {"charge_id": 3}, None),
]


def test_encoded_batch_with_history_keeps_every_version_merging_unchanged_columns():
    """History tables stage every change; later changes of a key inherit columns earlier ones carried."""
    rows, needs_stored_values = encoded_rows(True, MERGE_CHANGES)
    assert needs_stored_values
    assert rows == [
        ["1", "1", "long\\tnote", "5", "0", STAMP, "I", "\\N", "\\N"],
        ["1", "2", "long\\tnote", "5", "1", STAMP, "U", "\\N", "\\N"],
        ["2", "3", "\\N", "6", "0", STAMP, "U", '{"notes"}', "\\N"],
        ["3", "\\N", "\\N", "7", "0", STAMP, "D", '{"amount","notes"}', "\\N"],
    ]


def test_encoded_batch_without_history_stages_the_last_version_per_key():
    """Mirror-only tables stage one row per key: its last version, merged with what earlier ones carried."""
    rows, needs_stored_values = encoded_rows(False, MERGE_CHANGES)
    assert needs_stored_values
    assert rows == [
        ["1", "2", "long\\tnote", "5", "1", STAMP, "U", "\\N", "\\N"],
        ["2", "3", "\\N", "6", "0", STAMP, "U", '{"notes"}', "\\N"],
        ["3", "\\N", "\\N", "7", "0", STAMP, "D", '{"amount","notes"}', "\\N"],
    ]


def test_collapsed_delete_keeps_the_values_of_the_version_before_it():
    """A delete after an insert in one batch is a tombstone with the inserted values, needing no stored row."""
    changes = [
        CapturedChange("oltp", "charge", "insert", Position(5, 0), AT, {"charge_id": 1},
                       {"charge_id": 1, "amount": 1, "notes": None}),
        CapturedChange("oltp", "charge", "delete", Position(5, 1), AT, {"charge_id": 1}, None),
        CapturedChange("oltp", "charge", "insert", Position(6, 0), AT, {"charge_id": 1},
                       {"charge_id": 1, "amount": 9, "notes": "again"}),
        CapturedChange("oltp", "charge", "delete", Position(7, 0), AT, {"charge_id": 1}, None),
    ]
    rows, needs_stored_values = encoded_rows(False, changes)
    assert not needs_stored_values
    assert rows == [["1", "9", "again", "7", "0", STAMP, "D", "\\N", "\\N"]]
    history_rows, _ = encoded_rows(True, changes)
    assert [row[6] for row in history_rows] == ["I", "D", "I", "D"]
    assert history_rows[1][:3] == ["1", "1", "\\N"]


def test_encoding_error_names_the_change_and_column():
    changes = [
        CapturedChange("oltp", "charge", "insert", Position(5, 0), AT, {"charge_id": 1},
                       {"charge_id": 1, "amount": 1, "notes": "ok"}),
        CapturedChange("oltp", "charge", "insert", Position(5, 1), AT, {"charge_id": 2},
                       {"charge_id": 2, "amount": 2, "notes": object()}),
    ]
    for history in (False, True):
        with pytest.raises(WarehouseSinkError, match=r"insert at Position\(commit_lsn=5, index_in_txn=1\).*'notes'"):
            encoded_rows(history, changes)
