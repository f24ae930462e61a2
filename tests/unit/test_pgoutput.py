"""pgoutput decoding and text-value conversion, on message bytes built by hand per the protocol."""

from __future__ import annotations

import pickle
import struct
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from paydata.cdc import types as pgtypes
from paydata.cdc.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    Commit,
    DecodeError,
    Delete,
    Insert,
    LogicalMessage,
    Origin,
    PgOutputDecoder,
    Relation,
    RelationColumn,
    Truncate,
    TypeMessage,
    Update,
    decode_message,
    format_lsn,
    parse_lsn,
)
from paydata.cdc.types import ConversionError, convert_text
from tests.oracles.parsed_changes import ParsedDecoder

# --------------------------------------------------------------------------------------------
# Message builders (protocol version 1 layout, big-endian)

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
COMMIT_MICROS = 820_000_000_123_456  # 2025-12-26 ...
COMMIT_TIME = PG_EPOCH + timedelta(microseconds=COMMIT_MICROS)


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def begin(final_lsn: int, xid: int, micros: int = COMMIT_MICROS) -> bytes:
    return b"B" + struct.pack(">QqI", final_lsn, micros, xid)


def commit(commit_lsn: int, end_lsn: int, micros: int = COMMIT_MICROS) -> bytes:
    return b"C" + struct.pack(">BQQq", 0, commit_lsn, end_lsn, micros)


def origin(origin_lsn: int, name: str) -> bytes:
    return b"O" + struct.pack(">Q", origin_lsn) + cstr(name)


def relation(relation_id: int, namespace: str, name: str, columns, identity: bytes = b"d") -> bytes:
    out = b"R" + struct.pack(">I", relation_id) + cstr(namespace) + cstr(name) + identity
    out += struct.pack(">h", len(columns))
    for is_key, column, type_oid, typmod in columns:
        out += struct.pack(">B", 1 if is_key else 0) + cstr(column) + struct.pack(">Ii", type_oid, typmod)
    return out


def type_message(type_oid: int, namespace: str, name: str) -> bytes:
    return b"Y" + struct.pack(">I", type_oid) + cstr(namespace) + cstr(name)


def tuple_data(values) -> bytes:
    out = struct.pack(">h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED_TOAST:
            out += b"u"
        elif isinstance(value, bytes):
            out += b"b" + struct.pack(">i", len(value)) + value
        else:
            encoded = value.encode()
            out += b"t" + struct.pack(">i", len(encoded)) + encoded
    return out


def insert(relation_id: int, values) -> bytes:
    return b"I" + struct.pack(">I", relation_id) + b"N" + tuple_data(values)


def update(relation_id: int, new, old=None, old_kind: bytes = b"K") -> bytes:
    out = b"U" + struct.pack(">I", relation_id)
    if old is not None:
        out += old_kind + tuple_data(old)
    return out + b"N" + tuple_data(new)


def delete(relation_id: int, old, old_kind: bytes = b"K") -> bytes:
    return b"D" + struct.pack(">I", relation_id) + old_kind + tuple_data(old)


def truncate(relation_ids, cascade: bool = False, restart_identity: bool = False) -> bytes:
    options = (1 if cascade else 0) | (2 if restart_identity else 0)
    return b"T" + struct.pack(f">iB{len(relation_ids)}I", len(relation_ids), options, *relation_ids)


def logical_message(transactional: bool, lsn: int, prefix: str, content: bytes) -> bytes:
    return b"M" + struct.pack(">BQ", int(transactional), lsn) + cstr(prefix) + struct.pack(">i", len(content)) + content


PAYMENTS_OID = 16400
ACCOUNTS_OID = 16410
PAYMENTS_COLUMNS = [
    (True, "id", pgtypes.INT8, -1),
    (False, "status", pgtypes.BPCHAR, 5),
    (False, "amount", pgtypes.NUMERIC, (12 << 16 | 2) + 4),
    (False, "memo", pgtypes.TEXT, -1),
]
ACCOUNTS_COLUMNS = [(True, "id", pgtypes.INT4, -1), (False, "name", pgtypes.TEXT, -1)]
PAYMENTS_RELATION = relation(PAYMENTS_OID, "payments", "payment", PAYMENTS_COLUMNS)
ACCOUNTS_RELATION = relation(ACCOUNTS_OID, "payments", "account", ACCOUNTS_COLUMNS)


def run(*payloads, decoder: PgOutputDecoder | None = None):
    """Feed payloads with increasing fake WAL positions; return (decoder, completed items)."""
    decoder = decoder or ParsedDecoder()
    completed = []
    for offset, payload in enumerate(payloads):
        completed.extend(decoder.feed(payload, 0x1000 + offset * 0x10))
    return decoder, completed


def one_transaction(*body, final_lsn: int = 0x16_B374D848, xid: int = 777):
    _, completed = run(begin(final_lsn, xid), *body, commit(final_lsn, final_lsn + 0x30))
    assert len(completed) == 1
    return completed[0]


# --------------------------------------------------------------------------------------------
# LSN helpers


def test_parse_and_format_lsn_round_trip():
    assert parse_lsn("16/B374D848") == 0x16_B374D848
    assert format_lsn(0x16_B374D848) == "16/B374D848"
    assert parse_lsn("0/0") == 0
    assert format_lsn(parse_lsn("FFFFFFFF/FFFFFFFF")) == "FFFFFFFF/FFFFFFFF"


@pytest.mark.parametrize("text", ["", "16B374D848", "16/", "/1", "xyz/1", "1/2/3", "123456789/0"])
def test_parse_lsn_rejects_malformed_text(text):
    with pytest.raises(ValueError, match="malformed LSN"):
        parse_lsn(text)


def test_format_lsn_rejects_out_of_range():
    with pytest.raises(ValueError):
        format_lsn(-1)
    with pytest.raises(ValueError):
        format_lsn(1 << 64)


# --------------------------------------------------------------------------------------------
# Raw message decoding


def test_decode_begin_commit_origin():
    assert decode_message(begin(0x1234, 99)) == Begin(0x1234, COMMIT_TIME, 99)
    assert decode_message(commit(0x1234, 0x1260)) == Commit(0, 0x1234, 0x1260, COMMIT_TIME)
    assert decode_message(origin(0x55, "upstream")) == Origin(0x55, "upstream")


def test_decode_relation_and_type():
    decoded = decode_message(relation(7, "", "pg_thing", [(True, "a", 23, -1), (False, "b", 1042, 5)], b"f"))
    assert decoded == Relation(
        7, "", "pg_thing", "f", (RelationColumn("a", 23, -1, True), RelationColumn("b", 1042, 5, False))
    )
    assert decode_message(type_message(50001, "payments", "card_brand")) == TypeMessage(
        50001, "payments", "card_brand"
    )


def test_decode_tuple_kinds():
    decoded = decode_message(insert(5, ["1", None, UNCHANGED_TOAST, b"\x00\xff", "é"]))
    assert decoded == Insert(5, ("1", None, UNCHANGED_TOAST, b"\x00\xff", "é"))
    assert decoded.new[2] is UNCHANGED_TOAST


def test_decode_update_variants_and_delete():
    assert decode_message(update(5, ["2", "x"])) == Update(5, None, None, ("2", "x"))
    assert decode_message(update(5, ["2", "x"], old=["1", None])) == Update(5, "K", ("1", None), ("2", "x"))
    assert decode_message(update(5, ["2", "x"], old=["1", "y"], old_kind=b"O")) == Update(
        5, "O", ("1", "y"), ("2", "x")
    )
    assert decode_message(delete(5, ["1", None])) == Delete(5, "K", ("1", None))
    assert decode_message(delete(5, ["1", "y"], b"O")) == Delete(5, "O", ("1", "y"))


def test_decode_truncate_flags():
    assert decode_message(truncate([1, 2, 3], cascade=True, restart_identity=True)) == Truncate(
        (1, 2, 3), True, True
    )
    assert decode_message(truncate([4])) == Truncate((4,), False, False)
    assert decode_message(truncate([4], restart_identity=True)) == Truncate((4,), False, True)


def test_decode_logical_message():
    assert decode_message(logical_message(False, 0xABC, "paydata.heartbeat", b"\x01\x02")) == LogicalMessage(
        False, 0xABC, "paydata.heartbeat", b"\x01\x02"
    )


def test_decode_accepts_bytearray_and_memoryview():
    payload = insert(5, ["1"])
    assert decode_message(bytearray(payload)) == decode_message(memoryview(payload)) == Insert(5, ("1",))


@pytest.mark.parametrize(
    "payload",
    [
        begin(1, 2),
        commit(1, 2),
        origin(1, "o"),
        PAYMENTS_RELATION,
        type_message(1, "s", "t"),
        insert(5, ["12", None, "abc"]),
        update(5, ["2"], old=["1"]),
        delete(5, ["1"]),
        truncate([1, 2]),
        logical_message(True, 1, "p", b"content"),
    ],
    ids=lambda p: chr(p[0]),
)
def test_every_truncation_of_a_valid_message_is_a_decode_error(payload):
    for cut in range(len(payload)):
        with pytest.raises(DecodeError):
            decode_message(payload[:cut])


def test_trailing_bytes_are_a_decode_error():
    with pytest.raises(DecodeError, match="trailing"):
        decode_message(insert(5, ["1"]) + b"\x00")


@pytest.mark.parametrize(
    ("payload", "pattern"),
    [
        (b"Z\x00\x00", "unknown pgoutput message type"),
        (b"S" + struct.pack(">IB", 1, 1), "stream start.*streaming"),
        (b"c" + b"\x00" * 29, "stream commit"),
        (b"I" + struct.pack(">I", 5) + b"N" + struct.pack(">h", 1) + b"x", "unknown TupleData column kind"),
        (b"I" + struct.pack(">I", 5) + b"X" + tuple_data(["1"]), "expected 'N'"),
        (b"U" + struct.pack(">I", 5) + b"Q" + tuple_data(["1"]), "expected 'K', 'O' or 'N'"),
        (b"D" + struct.pack(">I", 5) + b"N" + tuple_data(["1"]), "expected 'K' or 'O'"),
        (b"I" + struct.pack(">I", 5) + b"N" + struct.pack(">h", 1) + b"t" + struct.pack(">i", -5), "overruns"),
        (b"I" + struct.pack(">I", 5) + b"N" + struct.pack(">h", 1) + b"t" + struct.pack(">i", 99) + b"ab", "overruns"),
        (b"T" + struct.pack(">iB", 1_000_000, 0) + b"\x00" * 8, "overrun"),
        (b"I" + struct.pack(">I", 5) + b"N" + struct.pack(">h", 1) + b"t" + struct.pack(">i", 2) + b"\xff\xfe", "corrupt"),
        (b"", "empty"),
    ],
)
def test_corrupt_payloads_raise_decode_error(payload, pattern):
    with pytest.raises(DecodeError, match=pattern):
        decode_message(payload)


# --------------------------------------------------------------------------------------------
# Stream decoding into typed changes


def test_relation_then_insert_gives_typed_change():
    txn = one_transaction(
        PAYMENTS_RELATION, insert(PAYMENTS_OID, ["42", "A", "1234.50", "first"]), xid=901
    )
    assert (txn.xid, txn.commit_lsn, txn.end_lsn, txn.commit_time) == (
        901, 0x16_B374D848, 0x16_B374D878, COMMIT_TIME,
    )
    assert txn.begin_lsn == 0x1000
    [change] = txn.changes
    assert change.kind == "insert"
    assert (change.schema, change.table) == ("payments", "payment")
    assert change.commit_lsn == 0x16_B374D848 and change.xid == 901 and change.commit_time == COMMIT_TIME
    assert change.index_in_txn == 0 and change.position == (0x16_B374D848, 0)
    assert change.new == {"id": 42, "status": "A", "amount": Decimal("1234.50"), "memo": "first"}
    assert change.old is None
    assert change.key == {"id": 42}
    assert change.lsn == 0x1020


def test_nulls_become_none():
    txn = one_transaction(PAYMENTS_RELATION, insert(PAYMENTS_OID, ["1", None, None, None]))
    assert txn.changes[0].new == {"id": 1, "status": None, "amount": None, "memo": None}


def test_update_without_old_key_takes_key_from_new_row():
    txn = one_transaction(PAYMENTS_RELATION, update(PAYMENTS_OID, ["1", "S", "10.00", "m"]))
    [change] = txn.changes
    assert change.kind == "update"
    assert change.old is None
    assert change.key == {"id": 1}
    assert change.new["status"] == "S"


def test_update_with_old_key_reports_the_old_key():
    txn = one_transaction(
        PAYMENTS_RELATION, update(PAYMENTS_OID, ["2", "S", "10.00", "m"], old=["1", None, None, None])
    )
    [change] = txn.changes
    assert change.old == {"id": 1}
    assert change.key == {"id": 1}
    assert change.new["id"] == 2


def test_update_with_full_old_row():
    full = relation(PAYMENTS_OID, "payments", "payment", [(True, *c[1:]) for c in PAYMENTS_COLUMNS], b"f")
    txn = one_transaction(
        full,
        update(PAYMENTS_OID, ["1", "S", "10.00", "m"], old=["1", "A", "10.00", "m"], old_kind=b"O"),
    )
    [change] = txn.changes
    assert change.old == {"id": 1, "status": "A", "amount": Decimal("10.00"), "memo": "m"}
    assert change.key == change.old


def test_update_with_unchanged_toast_column_yields_sentinel():
    txn = one_transaction(PAYMENTS_RELATION, update(PAYMENTS_OID, ["1", "S", "10.00", UNCHANGED_TOAST]))
    new = txn.changes[0].new
    assert new["memo"] is UNCHANGED_TOAST
    assert new["status"] == "S"


def test_unchanged_toast_sentinel_cannot_be_mistaken_for_a_value():
    assert repr(UNCHANGED_TOAST) == "UNCHANGED_TOAST"
    assert UNCHANGED_TOAST is not None
    with pytest.raises(TypeError, match="no truth value"):
        bool(UNCHANGED_TOAST)
    assert pickle.loads(pickle.dumps(UNCHANGED_TOAST)) is UNCHANGED_TOAST
    assert type(UNCHANGED_TOAST)() is UNCHANGED_TOAST


def test_delete_by_key():
    txn = one_transaction(PAYMENTS_RELATION, delete(PAYMENTS_OID, ["5", None, None, None]))
    [change] = txn.changes
    assert change.kind == "delete"
    assert change.new is None
    assert change.old == {"id": 5}
    assert change.key == {"id": 5}


def test_truncate_of_several_relations_with_flags():
    txn = one_transaction(
        PAYMENTS_RELATION,
        ACCOUNTS_RELATION,
        insert(ACCOUNTS_OID, ["1", "acme"]),
        truncate([ACCOUNTS_OID, PAYMENTS_OID], cascade=True, restart_identity=True),
    )
    assert [(c.kind, c.table, c.index_in_txn) for c in txn.changes] == [
        ("insert", "account", 0),
        ("truncate", "account", 1),
        ("truncate", "payment", 2),
    ]
    for change in txn.changes[1:]:
        assert change.truncate_cascade and change.truncate_restart_identity
        assert change.new is None and change.old is None and change.key == {}
    _, completed = run(PAYMENTS_RELATION, begin(10, 1), truncate([PAYMENTS_OID]), commit(10, 20))
    plain = completed[0].changes[0]
    assert not plain.truncate_cascade and not plain.truncate_restart_identity


def test_relation_resent_with_added_column_updates_the_cache():
    extended = relation(PAYMENTS_OID, "payments", "payment", [*PAYMENTS_COLUMNS, (False, "note", pgtypes.TEXT, -1)])
    decoder, completed = run(
        begin(100, 1),
        PAYMENTS_RELATION,
        insert(PAYMENTS_OID, ["1", "A", "1.00", "x"]),
        commit(100, 120),
        begin(200, 2),
        extended,
        insert(PAYMENTS_OID, ["2", "A", "2.00", "y", "added"]),
        commit(200, 220),
    )
    assert completed[0].changes[0].new == {"id": 1, "status": "A", "amount": Decimal("1.00"), "memo": "x"}
    assert completed[1].changes[0].new["note"] == "added"
    assert [c.name for c in decoder.relation(PAYMENTS_OID).columns][-1] == "note"
    # A tuple in the old shape no longer matches the cached relation.
    with pytest.raises(DecodeError, match="tuple has 4 columns, relation has 5"):
        run(begin(300, 3), insert(PAYMENTS_OID, ["3", "A", "3.00", "z"]), decoder=decoder)


def test_changes_are_numbered_per_transaction_in_commit_order():
    _, completed = run(
        PAYMENTS_RELATION,
        begin(100, 1),
        insert(PAYMENTS_OID, ["1", "A", "1.00", "a"]),
        insert(PAYMENTS_OID, ["2", "A", "1.00", "b"]),
        update(PAYMENTS_OID, ["1", "S", "1.00", "a"]),
        commit(100, 130),
        begin(200, 2),
        delete(PAYMENTS_OID, ["2", None, None, None]),
        commit(200, 230),
    )
    positions = [c.position for t in completed for c in t.changes]
    assert positions == [(100, 0), (100, 1), (100, 2), (200, 0)]
    assert [t.end_lsn for t in completed] == [130, 230]


def test_change_before_begin_is_a_decode_error():
    with pytest.raises(DecodeError, match="outside a transaction"):
        run(PAYMENTS_RELATION, insert(PAYMENTS_OID, ["1", "A", "1.00", "a"]))


def test_change_for_unknown_relation_is_a_decode_error():
    with pytest.raises(DecodeError, match="relation OID 999 before any Relation message"):
        run(begin(1, 1), insert(999, ["1"]))
    with pytest.raises(DecodeError, match="relation OID 999"):
        run(begin(1, 1), truncate([999]))
    with pytest.raises(DecodeError, match="relation OID 999"):
        ParsedDecoder().relation(999)


def test_protocol_order_violations_are_decode_errors():
    with pytest.raises(DecodeError, match="without a Begin"):
        run(commit(1, 2))
    with pytest.raises(DecodeError, match="still open"):
        run(begin(1, 1), begin(2, 2))
    with pytest.raises(DecodeError, match="differs from its Begin"):
        run(begin(100, 1), commit(101, 130))
    with pytest.raises(DecodeError, match="Origin message arrived outside"):
        run(origin(1, "o"))
    with pytest.raises(DecodeError, match="transactional message"):
        run(logical_message(True, 1, "p", b""))


def test_reset_discards_an_open_transaction_but_keeps_relations():
    decoder, _ = run(PAYMENTS_RELATION, begin(100, 1), insert(PAYMENTS_OID, ["1", "A", "1.00", "a"]))
    assert decoder.in_transaction
    decoder.reset()
    assert not decoder.in_transaction
    _, completed = run(begin(100, 1), insert(PAYMENTS_OID, ["1", "A", "1.00", "a"]), commit(100, 130), decoder=decoder)
    assert len(completed[0].changes) == 1


def test_logical_messages_and_origin():
    _, completed = run(
        logical_message(False, 50, "paydata.heartbeat", b"beat"),
        begin(100, 1),
        origin(77, "upstream"),
        logical_message(True, 90, "paydata.marker", b"m"),
        commit(100, 130),
    )
    heartbeat, txn = completed
    assert heartbeat == LogicalMessage(False, 50, "paydata.heartbeat", b"beat")
    assert txn.origin == "upstream"
    assert txn.messages == [LogicalMessage(True, 90, "paydata.marker", b"m")]
    assert txn.changes == []


def test_type_message_is_cached_and_unknown_type_values_stay_text():
    decoder, completed = run(
        type_message(50001, "payments", "card_brand"),
        relation(PAYMENTS_OID, "payments", "payment", [(True, "id", pgtypes.INT8, -1), (False, "brand", 50001, -1)]),
        begin(100, 1),
        insert(PAYMENTS_OID, ["1", "visa"]),
        commit(100, 130),
    )
    assert decoder.types[50001].name == "card_brand"
    assert completed[0].changes[0].new == {"id": 1, "brand": "visa"}


def test_empty_namespace_means_pg_catalog():
    txn = one_transaction(relation(1, "", "pg_thing", [(True, "a", 23, -1)]), insert(1, ["5"]))
    assert txn.changes[0].schema == "pg_catalog"


def test_unparsable_value_names_the_column():
    with pytest.raises(DecodeError, match=r"payments\.payment\.amount.*'12,50'"):
        run(PAYMENTS_RELATION, begin(1, 1), insert(PAYMENTS_OID, ["1", "A", "12,50", "m"]))


def test_binary_column_values_are_rejected_in_changes():
    with pytest.raises(DecodeError, match="binary column values are not supported"):
        run(PAYMENTS_RELATION, begin(1, 1), insert(PAYMENTS_OID, [b"\x00" * 8, "A", "1", "m"]))


def test_wrong_column_count_is_a_decode_error():
    with pytest.raises(DecodeError, match="tuple has 2 columns, relation has 4"):
        run(PAYMENTS_RELATION, begin(1, 1), insert(PAYMENTS_OID, ["1", "A"]))


# --------------------------------------------------------------------------------------------
# Text value conversion


@pytest.mark.parametrize(
    ("type_oid", "text", "expected"),
    [
        (pgtypes.BOOL, "t", True),
        (pgtypes.BOOL, "f", False),
        (pgtypes.INT2, "-32768", -32768),
        (pgtypes.INT4, "2147483647", 2147483647),
        (pgtypes.INT8, "-9223372036854775808", -9223372036854775808),
        (pgtypes.NUMERIC, "1234.50", Decimal("1234.50")),
        (pgtypes.NUMERIC, "-0.000001", Decimal("-0.000001")),
        (pgtypes.FLOAT4, "1.5", 1.5),
        (pgtypes.FLOAT8, "-Infinity", float("-inf")),
        (pgtypes.FLOAT8, "1e-300", 1e-300),
        (pgtypes.TEXT, "héllo, world", "héllo, world"),
        (pgtypes.VARCHAR, "", ""),
        (pgtypes.BPCHAR, "A", "A"),
        (pgtypes.BPCHAR, "AB  ", "AB  "),
        (pgtypes.CHAR, "S", "S"),
        (pgtypes.BYTEA, "\\x00ff10", b"\x00\xff\x10"),
        (pgtypes.BYTEA, "\\x", b""),
        (pgtypes.BYTEA, "ab\\\\c\\000\\377", b"ab\\c\x00\xff"),
        (pgtypes.DATE, "2024-02-29", date(2024, 2, 29)),
        (pgtypes.DATE, "infinity", date.max),
        (pgtypes.TIME, "13:14:15.5", time(13, 14, 15, 500000)),
        (pgtypes.TIMESTAMP, "2024-02-29 13:14:15.123456", datetime(2024, 2, 29, 13, 14, 15, 123456)),
        (pgtypes.TIMESTAMP, "2024-02-29 13:14:15", datetime(2024, 2, 29, 13, 14, 15)),
        (pgtypes.TIMESTAMP, "-infinity", datetime.min),
        (pgtypes.TIMESTAMPTZ, "2024-02-29 13:14:15.25+00", datetime(2024, 2, 29, 13, 14, 15, 250000, tzinfo=UTC)),
        (
            pgtypes.TIMESTAMPTZ,
            "2024-02-29 13:14:15+05:30",
            datetime(2024, 2, 29, 13, 14, 15, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        ),
        (
            pgtypes.TIMESTAMPTZ,
            "1880-01-01 00:00:00-00:01:15",
            datetime(1880, 1, 1, tzinfo=timezone(-timedelta(minutes=1, seconds=15))),
        ),
        (pgtypes.TIMESTAMPTZ, "infinity", datetime.max.replace(tzinfo=UTC)),
        (pgtypes.UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
        (pgtypes.JSON, '{"a": [1, 2.5, null]}', {"a": [1, 2.5, None]}),
        (pgtypes.JSONB, '"text"', "text"),
        (1009, '{a,"b c",NULL,"NULL","q\\"x","back\\\\slash"}', ["a", "b c", None, "NULL", 'q"x', "back\\slash"]),
        (1007, "{{1,2},{3,NULL}}", [[1, 2], [3, None]]),
        (1016, "{}", []),
        (1007, "[0:1]={7,8}", [7, 8]),
        (1231, "{1.5,-2}", [Decimal("1.5"), Decimal("-2")]),
        (1000, "{t,f}", [True, False]),
        (1015, '{"",x}', ["", "x"]),
        (1186, "1 day 02:00:00", "1 day 02:00:00"),
        (99999, "whatever", "whatever"),
    ],
)
def test_convert_text(type_oid, text, expected):
    assert convert_text(type_oid, text) == expected


def test_timestamptz_is_aware_and_normalises_to_the_same_instant():
    value = convert_text(pgtypes.TIMESTAMPTZ, "2024-02-29 18:44:15+05:30")
    assert value.tzinfo is not None
    assert value == datetime(2024, 2, 29, 13, 14, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("type_oid", "text"),
    [
        (pgtypes.BOOL, "true"),
        (pgtypes.BOOL, ""),
        (pgtypes.INT4, "1.5"),
        (pgtypes.INT4, ""),
        (pgtypes.INT8, " 12"),
        (pgtypes.INT8, "1_000"),
        (pgtypes.NUMERIC, "12,50"),
        (pgtypes.FLOAT8, "abc"),
        (pgtypes.BYTEA, "\\xzz"),
        (pgtypes.BYTEA, "\\x0"),
        (pgtypes.BYTEA, "bad\\9"),
        (pgtypes.DATE, "2024-02-30"),
        (pgtypes.DATE, "0044-03-15 BC"),
        (pgtypes.TIME, "25:00:00"),
        (pgtypes.TIMESTAMP, "2024-02-29"),
        (pgtypes.TIMESTAMP, "2024-02-29 13:14:15+00"),
        (pgtypes.TIMESTAMP, "10000-01-01 00:00:00"),
        (pgtypes.TIMESTAMPTZ, "2024-02-29 13:14:15"),
        (pgtypes.TIMESTAMPTZ, "2024-02-29 13:14:15+5"),
        (pgtypes.TIMESTAMPTZ, "2024-02-29 13:14:15+05:3x"),
        (pgtypes.UUID, "not-a-uuid"),
        (pgtypes.JSONB, "{broken"),
        (1007, "{1,2"),
        (1007, "1,2"),
        (1007, "{1,,2}"),
        (1007, "{1,}"),
        (1007, "{1}x"),
        (1007, "{a}"),
        (1009, '{"unterminated}'),
    ],
)
def test_convert_text_rejects_bad_input_with_a_clear_error(type_oid, text):
    with pytest.raises(ConversionError, match=f"type OID {type_oid}"):
        convert_text(type_oid, text)
