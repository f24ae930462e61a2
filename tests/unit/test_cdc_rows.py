"""The CDC fast path that keeps values as PostgreSQL output text (no services).

Decoding with ``PgOutputDecoder`` and capturing with ``Manifest.capture_raw`` must describe every
change exactly as the parsed oracle (``tests/oracles/parsed_changes.py``: ``ParsedDecoder`` and
``capture_parsed``) does once a row is turned back into a ``CapturedChange`` with ``CapturedRow.typed()``; the warehouse
sink's COPY encoding of text rows, its input checks, the shared garbage-collector pause and the
token base32 encoding are checked here too.
"""

from __future__ import annotations

import base64
import copy
import gc
import random
import struct
import threading
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from paydata.cdc import capturer, collector
from paydata.cdc import types as pgtypes
from paydata.cdc.collector import collector_paused
from paydata.cdc.manifest import SchemaDriftError, load_manifest
from paydata.cdc.model import CapturedChange, CapturedRow, Position, RowLayout, TableSpec
from paydata.cdc.pgoutput import (
    UNCHANGED_TOAST,
    DecodeError,
    PgOutputDecoder,
    RawChange,
    Relation,
    RelationColumn,
)
from paydata.cdc.sinks.warehouse import WarehouseSink, WarehouseSinkError
from paydata.cdc.sinks.warehouse.checks import validated_rows
from paydata.cdc.sinks.warehouse.plan import _TablePlan
from paydata.cdc.sinks.warehouse.versions import (
    FILL_BY_OLD_KEY,
    _encode_row_versions,
    _row_versions,
    encode_segment,
)
from paydata.crypto.tokens import _TOKEN_MAC_BYTES, _base32_lower
from tests.oracles.parsed_changes import ParsedDecoder, capture_parsed

# --------------------------------------------------------------------------------------------
# pgoutput message builders (protocol version 1 layout, big-endian)

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
COMMIT_MICROS = 820_000_000_123_456
COMMIT_TIME = PG_EPOCH + timedelta(microseconds=COMMIT_MICROS)
FINAL_LSN = 0x16_B374D848


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def begin(final_lsn: int = FINAL_LSN, xid: int = 777) -> bytes:
    return b"B" + struct.pack(">QqI", final_lsn, COMMIT_MICROS, xid)


def commit(commit_lsn: int = FINAL_LSN) -> bytes:
    return b"C" + struct.pack(">BQQq", 0, commit_lsn, commit_lsn + 0x30, COMMIT_MICROS)


def relation(relation_id: int, namespace: str, name: str, columns, identity: bytes = b"d") -> bytes:
    out = b"R" + struct.pack(">I", relation_id) + cstr(namespace) + cstr(name) + identity
    out += struct.pack(">h", len(columns))
    for is_key, column, type_oid, typmod in columns:
        out += struct.pack(">B", 1 if is_key else 0) + cstr(column) + struct.pack(">Ii", type_oid, typmod)
    return out


def tuple_data(values) -> bytes:
    out = struct.pack(">h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED_TOAST:
            out += b"u"
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


# --------------------------------------------------------------------------------------------
# A manifest and the relations the source describes

MANIFEST = {
    "source": "oltp",
    "slot": "s",
    "publication": "p",
    "tables": {
        "charge": {
            "key": ["charge_id"],
            "sinks": ["warehouse"],
            "columns": {
                "charge_id": "keep",
                "customer_id": "tokenise:customer",
                "captured": "keep",
                "amount": "keep",
                "created_at": "keep",
                "memo": "keep",
                "email_enc": "drop",
            },
        },
        "customer": {
            "key": ["customer_id"],
            "sinks": ["warehouse"],
            "columns": {"customer_id": "tokenise:customer", "country_code": "keep"},
        },
    },
}
CAPTURED_CHARGE_COLUMNS = ("charge_id", "customer_id", "captured", "amount", "created_at", "memo")

CHARGE_OID = 16500
CUSTOMER_OID = 16510
AUDIT_OID = 16520  # a table the manifest does not capture
FOREIGN_OID = 16530  # a captured table's name in another schema

# The relation's column order differs from the manifest's, so the projection has to reorder.
CHARGE_COLUMNS = [
    (False, "memo", pgtypes.TEXT, -1),
    (True, "charge_id", pgtypes.INT8, -1),
    (False, "amount", pgtypes.NUMERIC, (12 << 16 | 2) + 4),
    (False, "email_enc", pgtypes.BYTEA, -1),
    (False, "customer_id", pgtypes.INT8, -1),
    (False, "created_at", pgtypes.TIMESTAMPTZ, -1),
    (False, "captured", pgtypes.BOOL, -1),
]
CHARGE_NAMES = [column[1] for column in CHARGE_COLUMNS]
CUSTOMER_COLUMNS = [(True, "customer_id", pgtypes.INT8, -1), (False, "country_code", pgtypes.BPCHAR, 6)]
CHARGE_RELATION = relation(CHARGE_OID, "public", "charge", CHARGE_COLUMNS)
CUSTOMER_RELATION = relation(CUSTOMER_OID, "public", "customer", CUSTOMER_COLUMNS)
AUDIT_RELATION = relation(AUDIT_OID, "public", "audit_log", [(True, "id", pgtypes.INT8, -1)])
FOREIGN_RELATION = relation(FOREIGN_OID, "payments", "charge", CHARGE_COLUMNS)
RELATIONS = (CHARGE_RELATION, CUSTOMER_RELATION, AUDIT_RELATION, FOREIGN_RELATION)


def charge(
    charge_id="7", customer="42", captured="t", amount="12.50", created="2024-05-01 12:34:56.789+02",
    memo="note", email="\\x00ff",
):
    """A charge tuple in the relation's column order."""
    values = {
        "memo": memo, "charge_id": charge_id, "amount": amount, "email_enc": email, "customer_id": customer,
        "created_at": created, "captured": captured,
    }
    return [values[name] for name in CHARGE_NAMES]


def charge_key(charge_id):
    """A 'K' old tuple: the replica identity columns, the others NULL."""
    return [charge_id if name == "charge_id" else None for name in CHARGE_NAMES]


def fake_tokenise(value: str, *, domain: str) -> str:
    return f"tok[{domain}:{value}]"


class CountingTokeniser:
    def __init__(self, tag: str = "tok"):
        self.tag = tag
        self.calls: Counter[tuple[str, str]] = Counter()

    def __call__(self, value: str, *, domain: str) -> str:
        self.calls[(domain, value)] += 1
        return f"{self.tag}[{domain}:{value}]"


def manifest(tokenise=fake_tokenise):
    loaded = load_manifest(copy.deepcopy(MANIFEST))
    loaded.tokenise = tokenise
    return loaded


def transaction(*body, parsed: bool, relations=RELATIONS):
    decoder = ParsedDecoder() if parsed else PgOutputDecoder()
    completed = []
    for offset, payload in enumerate([*relations, begin(), *body, commit()]):
        completed.extend(decoder.feed(payload, 0x1000 + offset * 0x10))
    [txn] = completed
    return txn


def captured_both_ways(*body, relations=RELATIONS):
    """(parsed path's CapturedChanges, fast path's CapturedRows) for one transaction."""
    parsed = transaction(*body, parsed=True, relations=relations)
    raw = transaction(*body, parsed=False, relations=relations)
    assert all(type(change) is RawChange for change in raw.changes)
    typed_manifest, raw_manifest = manifest(), manifest()
    expected = [captured for change in parsed.changes for captured in capture_parsed(typed_manifest, change)]
    rows = [captured for change in raw.changes for captured in raw_manifest.capture_raw(change)]
    assert all(type(row) is CapturedRow for row in rows)
    return expected, rows


# --------------------------------------------------------------------------------------------
# 1. The fast path captures what the parsed path captures


def test_insert_values_stay_text_and_parse_to_the_typed_values():
    expected, rows = captured_both_ways(insert(CHARGE_OID, charge()))
    [row] = rows
    assert row.layout.columns == CAPTURED_CHARGE_COLUMNS and row.layout.key == ("charge_id",)
    assert list(row.values) == ["7", "tok[customer:42]", "t", "12.50", "2024-05-01 12:34:56.789+02", "note"]
    assert row.key == "7" and row.has_unchanged is False
    assert row.position == Position(FINAL_LSN, 0) and row.commit_time == COMMIT_TIME
    [typed] = expected
    assert typed.row == {
        "charge_id": 7,
        "customer_id": "tok[customer:42]",
        "captured": True,
        "amount": Decimal("12.50"),
        "created_at": datetime(2024, 5, 1, 10, 34, 56, 789000, tzinfo=UTC),
        "memo": "note",
    }
    assert row.typed() == typed


@pytest.mark.parametrize(
    ("body", "kinds"),
    [
        pytest.param([insert(CHARGE_OID, charge())], ["insert"], id="insert"),
        pytest.param(
            [insert(CHARGE_OID, charge(customer=None, captured=None, amount=None, created=None, memo=None,
                                       email=None))],
            ["insert"],
            id="insert-nulls",
        ),
        pytest.param([insert(CHARGE_OID, charge(captured="f", amount="-0.01", memo=""))], ["insert"],
                     id="insert-false-negative-empty"),
        pytest.param([update(CHARGE_OID, charge(amount="13.00", captured="f"))], ["update"], id="update"),
        pytest.param([update(CHARGE_OID, charge(memo="b"), old=charge_key("7"))], ["update"],
                     id="update-old-key-same"),
        pytest.param([update(CHARGE_OID, charge(memo="b"), old=charge_key("6"))], ["delete", "update"],
                     id="update-old-key-changed"),
        pytest.param([update(CHARGE_OID, charge(memo="b"), old=charge(memo="a"), old_kind=b"O")], ["update"],
                     id="update-old-row-same-key"),
        pytest.param([update(CHARGE_OID, charge(), old=charge(charge_id="6", customer="41"), old_kind=b"O")],
                     ["delete", "update"], id="update-old-row-key-changed"),
        pytest.param([update(CHARGE_OID, charge(memo=UNCHANGED_TOAST))], ["update"],
                     id="update-unchanged-toast"),
        pytest.param([delete(CHARGE_OID, charge_key("7"))], ["delete"], id="delete-old-key"),
        pytest.param([delete(CHARGE_OID, charge(), b"O")], ["delete"], id="delete-old-row"),
        pytest.param(
            [
                insert(CUSTOMER_OID, ["41", "FR"]),
                update(CUSTOMER_OID, ["42", "FR"], old=["41", None]),
                update(CUSTOMER_OID, ["42", None]),
                delete(CUSTOMER_OID, ["42", None]),
            ],
            ["insert", "delete", "update", "update", "delete"],
            id="tokenised-key",
        ),
        pytest.param([insert(AUDIT_OID, ["1"]), insert(FOREIGN_OID, charge())], [], id="uncaptured"),
        pytest.param(
            [
                insert(CHARGE_OID, charge("1")),
                insert(AUDIT_OID, ["1"]),
                update(CHARGE_OID, charge("2", memo=UNCHANGED_TOAST), old=charge_key("1")),
                delete(CHARGE_OID, charge_key("2")),
                insert(CUSTOMER_OID, ["42", "DE"]),
            ],
            ["insert", "delete", "update", "delete", "insert"],
            id="mixed-transaction",
        ),
    ],
)
def test_fast_path_equals_the_parsed_path(body, kinds):
    expected, rows = captured_both_ways(*body)
    assert [change.kind for change in expected] == kinds
    assert [row.typed() for row in rows] == expected
    for row in rows:
        assert row.values is None or all(value is None or value is UNCHANGED_TOAST or type(value) is str
                                         for value in row.values)


def test_key_change_is_a_delete_of_the_old_key_then_the_update_at_one_position():
    _, rows = captured_both_ways(update(CHARGE_OID, charge("8"), old=charge_key("6")))
    deleted, updated = rows
    assert (deleted.kind, deleted.key, deleted.values) == ("delete", "6", None)
    assert (updated.kind, updated.key) == ("update", "8")
    assert deleted.position == updated.position == Position(FINAL_LSN, 0)


def test_tokenised_key_columns_are_tokens_in_the_key():
    _, rows = captured_both_ways(
        update(CUSTOMER_OID, ["42", "FR"], old=["41", None]), delete(CUSTOMER_OID, ["42", None])
    )
    assert [(row.kind, row.key) for row in rows] == [
        ("delete", "tok[customer:41]"), ("update", "tok[customer:42]"), ("delete", "tok[customer:42]"),
    ]


def test_truncate_of_captured_relations_matches_the_parsed_path_apart_from_the_key():
    expected, rows = captured_both_ways(truncate([CHARGE_OID, AUDIT_OID, CUSTOMER_OID], cascade=True))
    assert [(row.table, row.kind, row.position, row.values) for row in rows] == [
        ("charge", "truncate", Position(FINAL_LSN, 0), None),
        ("customer", "truncate", Position(FINAL_LSN, 2), None),
    ]
    typed = [row.typed() for row in rows]

    def described(change):
        return change.table, change.kind, change.position, change.row, change.commit_time

    assert [described(change) for change in typed] == [described(change) for change in expected]


def test_typed_truncate_has_an_empty_key_like_the_parsed_path():
    expected, rows = captured_both_ways(truncate([CHARGE_OID]))
    assert [row.typed() for row in rows] == expected


def test_typed_truncate_of_a_table_with_a_composite_key():
    numeric = pgtypes.parser_for(pgtypes.NUMERIC)
    layout = RowLayout("fx_rate", ("base", "quote", "rate"), (None, None, numeric), ("base", "quote"))
    row = CapturedRow("reference", "fx_rate", "truncate", 5, 0, COMMIT_TIME, None, None, layout)
    expected = CapturedChange("reference", "fx_rate", "truncate", Position(5, 0), COMMIT_TIME, {}, None)
    assert row.typed() == expected


def test_byte_payloads_and_other_buffers_decode_to_the_same_raw_changes():
    """bytes take the row fast path; bytearray and memoryview go through decode_message."""
    body = [
        insert(CHARGE_OID, charge()),
        update(CHARGE_OID, charge(memo=UNCHANGED_TOAST), old=charge_key("6")),
        update(CHARGE_OID, charge(), old=charge(), old_kind=b"O"),
        delete(CHARGE_OID, charge_key("7")),
        truncate([CHARGE_OID]),
    ]
    fast = transaction(*body, parsed=False).changes
    via_bytearray = transaction(*map(bytearray, body), parsed=False).changes
    via_memoryview = transaction(*map(memoryview, body), parsed=False).changes
    assert fast == via_bytearray == via_memoryview
    assert [change.kind for change in fast] == ["insert", "update", "update", "delete", "truncate"]
    assert [change.old_kind for change in fast] == [None, "K", "O", "K", None]
    assert fast[1].new[0] is UNCHANGED_TOAST and fast[1].old == tuple(charge_key("6"))


# --------------------------------------------------------------------------------------------
# 2. Unchanged TOAST


def test_unchanged_toast_is_kept_as_the_sentinel_and_typed_lists_it():
    _, rows = captured_both_ways(
        update(CHARGE_OID, charge(memo=UNCHANGED_TOAST)), insert(CHARGE_OID, charge("9"))
    )
    updated, inserted = rows
    assert updated.has_unchanged is True and inserted.has_unchanged is False
    assert updated.values[CAPTURED_CHARGE_COLUMNS.index("memo")] is UNCHANGED_TOAST
    typed = updated.typed()
    assert typed.unchanged == frozenset({"memo"}) and "memo" not in typed.row
    assert typed.row["charge_id"] == 7 and typed.key == {"charge_id": 7}
    assert inserted.typed().unchanged == frozenset()


def test_unchanged_toast_in_a_tokenised_column_is_not_tokenised():
    tokenise = CountingTokeniser()
    loaded = manifest(tokenise)
    raw = transaction(update(CHARGE_OID, charge(customer=UNCHANGED_TOAST)), parsed=False)
    [row] = loaded.capture_raw(raw.changes[0])
    assert row.values[CAPTURED_CHARGE_COLUMNS.index("customer_id")] is UNCHANGED_TOAST
    assert row.typed().unchanged == frozenset({"customer_id"}) and not tokenise.calls


# --------------------------------------------------------------------------------------------
# 3. Bad payloads for the raw decoder


def open_raw_decoder(*relations):
    decoder = PgOutputDecoder()
    for payload in (*(relations or (CHARGE_RELATION,)), begin()):
        assert decoder.feed(payload) == []
    return decoder


def assert_transaction_is_empty(decoder):
    [txn] = decoder.feed(commit())
    assert txn.changes == []


OID = struct.pack(">I", CHARGE_OID)
UNKNOWN = "relation OID 99999 before any Relation message"


@pytest.mark.parametrize("wrap", [bytes, bytearray], ids=["fast-path", "decode-message"])
@pytest.mark.parametrize(
    ("payload", "pattern"),
    [
        pytest.param(insert(CHARGE_OID, charge()) + b"\x00", "'I' message has 1 unexpected trailing bytes",
                     id="insert-trailing"),
        pytest.param(update(CHARGE_OID, charge()) + b"xy", "'U' message has 2 unexpected trailing bytes",
                     id="update-trailing"),
        pytest.param(delete(CHARGE_OID, charge_key("7")) + b"\x00", "'D' message has 1 unexpected trailing",
                     id="delete-trailing"),
        pytest.param(insert(CHARGE_OID, ["7", "x", "1"]),
                     r"public\.charge: tuple has 3 columns, relation has 7",
                     id="insert-column-count"),
        pytest.param(update(CHARGE_OID, charge() + ["extra"]), "tuple has 8 columns, relation has 7",
                     id="update-new-column-count"),
        pytest.param(update(CHARGE_OID, charge(), old=["7"]), "tuple has 1 columns, relation has 7",
                     id="update-old-column-count"),
        pytest.param(delete(CHARGE_OID, ["7", None]), "tuple has 2 columns, relation has 7",
                     id="delete-column-count"),
        pytest.param(insert(99999, ["1"]), UNKNOWN, id="insert-unknown"),
        pytest.param(update(99999, ["1"]), UNKNOWN, id="update-unknown"),
        pytest.param(delete(99999, ["1"]), UNKNOWN, id="delete-unknown"),
        pytest.param(truncate([99999, CHARGE_OID]), UNKNOWN,
                     id="truncate-unknown"),
        pytest.param(b"I" + OID + b"X" + tuple_data(charge()),
                     r"insert: expected 'N' before the new tuple, got b'X'",
                     id="insert-marker"),
        pytest.param(b"U" + OID + b"X" + tuple_data(charge()), r"update: expected 'K', 'O' or 'N', got b'X'",
                     id="update-marker"),
        pytest.param(b"U" + OID + b"K" + tuple_data(charge_key("7")) + b"K" + tuple_data(charge()),
                     r"update: expected 'K', 'O' or 'N', got b'K'", id="update-marker-after-old"),
        pytest.param(b"D" + OID + b"N" + tuple_data(charge_key("7")),
                     r"delete: expected 'K' or 'O', got b'N'",
                     id="delete-marker"),
        pytest.param(b"I" + OID + b"N" + struct.pack(">h", 1) + b"x", "unknown TupleData column kind",
                     id="column-kind"),
        pytest.param(b"I" + OID + b"N" + struct.pack(">h", 1) + b"t" + struct.pack(">i", -5), "overruns",
                     id="negative-length"),
        pytest.param(b"I" + OID + b"N" + struct.pack(">h", 1) + b"t" + struct.pack(">i", 99) + b"ab",
                     "overruns",
                     id="long-length"),
        pytest.param(b"I" + OID + b"N" + struct.pack(">h", 1) + b"t" + struct.pack(">i", 2) + b"\xff\xfe",
                     "truncated or corrupt 'I' message", id="bad-utf8"),
    ],
)
def test_bad_row_messages_are_decode_errors_and_add_nothing(payload, pattern, wrap):
    decoder = open_raw_decoder()
    with pytest.raises(DecodeError, match=pattern):
        decoder.feed(wrap(payload))
    assert_transaction_is_empty(decoder)


@pytest.mark.parametrize(
    "payload",
    [
        insert(CHARGE_OID, charge()),
        update(CHARGE_OID, charge(memo=UNCHANGED_TOAST), old=charge(), old_kind=b"O"),
        update(CHARGE_OID, charge(), old=charge_key("6")),
        delete(CHARGE_OID, charge_key("7")),
    ],
    ids=["insert", "update-old-row", "update-old-key", "delete"],
)
def test_every_truncation_of_a_row_message_is_a_decode_error(payload):
    decoder = open_raw_decoder()
    for cut in range(1, len(payload)):
        with pytest.raises(DecodeError, match="truncated or corrupt|overruns"):
            decoder.feed(payload[:cut])
    decoder.feed(payload)  # the decoder is still usable and the whole message decodes
    [txn] = decoder.feed(commit())
    assert len(txn.changes) == 1


@pytest.mark.parametrize(
    "payload",
    [insert(CHARGE_OID, charge()), update(CHARGE_OID, charge()), delete(CHARGE_OID, charge_key("7")),
     truncate([CHARGE_OID])],
    ids=["insert", "update", "delete", "truncate"],
)
def test_row_message_outside_a_transaction_is_a_decode_error(payload):
    decoder = PgOutputDecoder()
    decoder.feed(CHARGE_RELATION)
    with pytest.raises(DecodeError, match="arrived outside a transaction"):
        decoder.feed(payload)
    decoder.feed(begin())
    decoder.feed(insert(CHARGE_OID, charge()))
    decoder.feed(commit())
    with pytest.raises(DecodeError, match="arrived outside a transaction"):
        decoder.feed(payload)


# --------------------------------------------------------------------------------------------
# 4. Schema drift


def without(name):
    return [column for column in CHARGE_COLUMNS if column[1] != name]


def drop_value(values, name):
    return [value for column, value in zip(CHARGE_NAMES, values, strict=True) if column != name]


@pytest.mark.parametrize("missing", ["memo", "customer_id", "email_enc"])
def test_relation_lacking_a_manifest_column_is_schema_drift_for_inserts_and_updates(missing):
    narrow = relation(CHARGE_OID, "public", "charge", without(missing))
    body = [
        insert(CHARGE_OID, drop_value(charge(), missing)),
        update(CHARGE_OID, drop_value(charge(), missing)),
        update(CHARGE_OID, drop_value(charge(), missing), old=drop_value(charge_key("6"), missing)),
    ]
    raw = transaction(*body, parsed=False, relations=(narrow,))
    parsed = transaction(*body, parsed=True, relations=(narrow,))
    loaded, typed_manifest = manifest(), manifest()
    for raw_change, parsed_change in zip(raw.changes, parsed.changes, strict=True):
        with pytest.raises(SchemaDriftError, match=rf"manifest column\(s\) {missing} missing"):
            loaded.capture_raw(raw_change)
        with pytest.raises(SchemaDriftError, match=missing):
            capture_parsed(typed_manifest, parsed_change)
    # deletes and truncates need only the key, which is still there
    raw = transaction(delete(CHARGE_OID, drop_value(charge_key("7"), missing)), truncate([CHARGE_OID]),
                      parsed=False, relations=(narrow,))
    deleted, truncated = (row for change in raw.changes for row in loaded.capture_raw(change))
    assert (deleted.kind, deleted.key, truncated.kind) == ("delete", "7", "truncate")


def test_delete_whose_replica_identity_lacks_the_manifest_key_is_schema_drift():
    # replica identity on customer_id (e.g. REPLICA IDENTITY USING INDEX): a 'K' old tuple has no charge_id
    columns = [(name == "customer_id", name, oid, mod) for _, name, oid, mod in CHARGE_COLUMNS]
    other_identity = relation(CHARGE_OID, "public", "charge", columns, b"i")
    old_key = [("42" if name == "customer_id" else None) for name in CHARGE_NAMES]
    raw = transaction(delete(CHARGE_OID, old_key), delete(CHARGE_OID, charge(), b"O"),
                      parsed=False, relations=(other_identity,))
    parsed = transaction(delete(CHARGE_OID, old_key), delete(CHARGE_OID, charge(), b"O"),
                         parsed=True, relations=(other_identity,))
    loaded = manifest()
    with pytest.raises(SchemaDriftError, match=r"lacks key column\(s\) charge_id: the table's replica"):
        loaded.capture_raw(raw.changes[0])
    with pytest.raises(SchemaDriftError, match="charge_id"):
        capture_parsed(manifest(), parsed.changes[0])
    # a full old row ('O') carries the key whatever the identity
    [deleted] = loaded.capture_raw(raw.changes[1])
    assert deleted.key == "7" and deleted.typed() == capture_parsed(manifest(), parsed.changes[1])[0]


def test_delete_of_a_relation_without_the_key_column_is_schema_drift():
    keyless = relation(CHARGE_OID, "public", "charge", without("charge_id"), b"f")
    raw = transaction(delete(CHARGE_OID, drop_value(charge(), "charge_id"), b"O"), parsed=False,
                      relations=(keyless,))
    with pytest.raises(SchemaDriftError, match="charge_id"):
        manifest().capture_raw(raw.changes[0])


def test_unlisted_column_is_ignored_with_one_warning(caplog):
    wider = relation(CHARGE_OID, "public", "charge", [*CHARGE_COLUMNS[:3], (False, "ssn", pgtypes.TEXT, -1),
                                                       *CHARGE_COLUMNS[3:]])
    values = [*charge()[:3], "123-45-6789", *charge()[3:]]
    loaded = manifest()
    rows = []
    for _ in range(2):  # the second stream re-sends the Relation: a new object, a rebuilt plan
        raw = transaction(insert(CHARGE_OID, values), update(CHARGE_OID, values), parsed=False,
                          relations=(wider,))
        rows += [row for change in raw.changes for row in loaded.capture_raw(change)]
    assert [row.kind for row in rows] == ["insert", "update"] * 2
    for row in rows:
        assert row.layout.columns == CAPTURED_CHARGE_COLUMNS
        assert "123-45-6789" not in row.values and "ssn" not in row.typed().row
    assert rows[0].layout is not rows[2].layout
    assert sum("ssn" in message for message in caplog.messages) == 1


def test_a_new_relation_message_rebuilds_the_plan():
    loaded = manifest()
    decoder = PgOutputDecoder()
    reordered = list(reversed(CHARGE_COLUMNS))

    def run(*payloads):
        completed = []
        for payload in (begin(), *payloads, commit()):
            completed.extend(decoder.feed(payload))
        [txn] = completed
        return txn.changes

    decoder.feed(CHARGE_RELATION)
    [first] = run(insert(CHARGE_OID, charge("1")))
    [row1] = loaded.capture_raw(first)
    [again] = loaded.capture_raw(run(insert(CHARGE_OID, charge("2")))[0])
    assert again.layout is row1.layout  # same Relation object: the cached plan

    decoder.feed(relation(CHARGE_OID, "public", "charge", without("memo")))
    [narrow] = run(insert(CHARGE_OID, drop_value(charge("3"), "memo")))
    with pytest.raises(SchemaDriftError, match="memo"):
        loaded.capture_raw(narrow)

    decoder.feed(relation(CHARGE_OID, "public", "charge", reordered))
    [wide] = run(insert(CHARGE_OID, list(reversed(charge("4", memo="back")))))
    [row4] = loaded.capture_raw(wide)
    assert row4.layout == row1.layout and row4.layout is not row1.layout
    assert list(row4.values) == ["4", "tok[customer:42]", "t", "12.50", "2024-05-01 12:34:56.789+02", "back"]

    decoder.feed(relation(CHARGE_OID, "public", "audit_log", reordered))  # renamed: no longer captured
    assert loaded.capture_raw(run(insert(CHARGE_OID, list(reversed(charge("5")))))[0]) == []


# --------------------------------------------------------------------------------------------
# 5. The token memo

CHARGE_REL = Relation(
    CHARGE_OID, "public", "charge", "d",
    tuple(RelationColumn(name, oid, mod, is_key) for is_key, name, oid, mod in CHARGE_COLUMNS),
)
CUSTOMER_REL = Relation(
    CUSTOMER_OID, "public", "customer", "d",
    tuple(RelationColumn(name, oid, mod, is_key) for is_key, name, oid, mod in CUSTOMER_COLUMNS),
)


def raw_insert(index, customer, charge_id=None):
    values = charge(str(index if charge_id is None else charge_id), customer=customer)
    return RawChange("insert", CHARGE_REL, 100, index, COMMIT_TIME, tuple(values), None)


def customer_ids(loaded, *changes):
    """Tokenised customer ids of ``changes`` captured in one pinned block (the memo lives in blocks)."""
    position = CAPTURED_CHARGE_COLUMNS.index("customer_id")
    with loaded.pinned_tokeniser():
        return [row.values[position] for change in changes for row in loaded.capture_raw(change)]


def memo_sizes(loaded):
    return [len(memo) for memo in loaded._token_memos.values()]


def test_each_distinct_value_is_tokenised_once():
    tokenise = CountingTokeniser()
    loaded = manifest(tokenise)
    ids = [str(40 + index % 5) for index in range(200)]
    assert customer_ids(loaded, *(raw_insert(index, ids[index]) for index in range(200))) == [
        f"tok[customer:{value}]" for value in ids
    ]
    # the customer table's key shares the (domain, type) memo; deletes tokenise their old key through it
    customers = [RawChange("insert", CUSTOMER_REL, 200, index, COMMIT_TIME, (str(40 + index), "FR"), None)
                 for index in range(5)]
    customers.append(RawChange("delete", CUSTOMER_REL, 200, 5, COMMIT_TIME, None, ("43", None), "K"))
    with loaded.pinned_tokeniser():
        keys = [row.key for change in customers for row in loaded.capture_raw(change)]
    assert keys == [f"tok[customer:{40 + index}]" for index in range(5)] + ["tok[customer:43]"]
    assert tokenise.calls == Counter({("customer", str(value)): 1 for value in range(40, 45)})
    # NULLs are never tokenised
    assert customer_ids(loaded, raw_insert(300, None)) == [None]
    assert sum(tokenise.calls.values()) == 5


def test_memo_starts_over_when_it_reaches_its_bound(monkeypatch):
    monkeypatch.setattr(capturer, "TOKEN_MEMO_ENTRIES", 3)
    tokenise = CountingTokeniser()
    loaded = manifest(tokenise)
    sequence = ["1", "2", "3", "1", "2", "3", "4", "1", "4", "5", "6", "4"]
    for index, value in enumerate(sequence):
        assert customer_ids(loaded, raw_insert(index, value)) == [f"tok[customer:{value}]"]
        assert max(memo_sizes(loaded)) <= 3
    # 1 2 3 fill it; 4 finds it full and starts over (4); 1 misses (4 1); 4 hits; 5 fills it (4 1 5);
    # 6 starts over (6); 4 misses
    assert tokenise.calls == Counter({
        ("customer", "1"): 2, ("customer", "2"): 1, ("customer", "3"): 1, ("customer", "4"): 2,
        ("customer", "5"): 1, ("customer", "6"): 1,
    })


def test_a_new_tokeniser_clears_the_memo():
    first, second = CountingTokeniser("A"), CountingTokeniser("B")
    loaded = manifest(first)
    assert customer_ids(loaded, raw_insert(0, "1"), raw_insert(1, "2")) == ["A[customer:1]", "A[customer:2]"]
    loaded.tokenise = second
    assert customer_ids(loaded, raw_insert(2, "3"), raw_insert(3, "1"), raw_insert(4, "2")) == [
        "B[customer:3]", "B[customer:1]", "B[customer:2]",
    ]
    assert set(second.calls) == {("customer", "1"), ("customer", "2"), ("customer", "3")}


def test_a_new_tokeniser_applies_to_values_already_remembered():
    loaded = manifest(CountingTokeniser("A"))
    assert customer_ids(loaded, raw_insert(0, "1")) == ["A[customer:1]"]
    loaded.tokenise = CountingTokeniser("B")
    assert customer_ids(loaded, raw_insert(1, "1")) == ["B[customer:1]"]


def test_key_rotation_between_pinned_blocks_reaches_remembered_values(tmp_path, monkeypatch):
    from paydata.crypto import KeyRing, reload_keys

    key_file = tmp_path / "token_key"
    key_file.write_text(KeyRing.generate_line("k1") + "\n")
    monkeypatch.delenv("PAYDATA_TOKEN_KEY", raising=False)
    monkeypatch.setenv("PAYDATA_TOKEN_KEY_FILE", str(key_file))
    reload_keys()
    try:
        loaded = manifest(None)
        with loaded.pinned_tokeniser():
            [before] = customer_ids(loaded, raw_insert(0, "42"))
        with key_file.open("a") as handle:
            handle.write(KeyRing.generate_line("k2") + "\n")
        reload_keys()
        with loaded.pinned_tokeniser():
            [after] = customer_ids(loaded, raw_insert(1, "42"))
        assert before.startswith("tok_k1_")
        assert after.startswith("tok_k2_")
    finally:
        monkeypatch.undo()
        reload_keys()


# --------------------------------------------------------------------------------------------
# 6. COPY text of text rows

AT = datetime(2024, 1, 1, tzinfo=UTC)
STAMP = "2024-01-01T00:00:00+00:00"
NOTES = TableSpec(
    source="oltp", table="note", key=("note_id",),
    columns={"note_id": "bigint", "amount": "bigint", "body": "text", "flag": "boolean"},
    sinks=("warehouse",),
)
NOTES_LAYOUT = RowLayout(
    "note", ("note_id", "amount", "body", "flag"),
    (pgtypes.parser_for(pgtypes.INT8), pgtypes.parser_for(pgtypes.INT8), None,
     pgtypes.parser_for(pgtypes.BOOL)),
    ("note_id",),
)
LABELS = TableSpec(source="oltp", table="label", key=("code",), columns={"code": "text", "label": "text"},
                   sinks=("warehouse",))
LABELS_LAYOUT = RowLayout("label", ("code", "label"), (None, None), ("code",))


def note(kind, lsn, index, key, values=None, layout=NOTES_LAYOUT, table="note", source="oltp"):
    has_unchanged = kind == "update" and any(value is UNCHANGED_TOAST for value in values)
    return CapturedRow(source, table, kind, lsn, index, AT, key, values, layout, has_unchanged)


def encode_rows(spec, rows, history=None):
    plan = _TablePlan.build(spec if history is None else replace(spec, history=history))
    text, needs_stored_values = _encode_row_versions(plan, _row_versions(plan, rows), {})
    lines = text.split("\n")
    assert lines[-1] == ""  # COPY text ends every line, the last included
    return [line.split("\t") for line in lines[:-1]], needs_stored_values


def encode_typed(spec, rows, history=None):
    plan = _TablePlan.build(spec if history is None else replace(spec, history=history))
    return encode_segment(plan, [row.typed() for row in rows])


def copy_field(text):
    """Decode one COPY text-format field (the escapes the encoder produces)."""
    if text == "\\N":
        return None
    out = []
    position = 0
    while position < len(text):
        char = text[position]
        if char == "\\":
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[text[position + 1]])
            position += 2
        else:
            out.append(char)
            position += 1
    return "".join(out)


def test_special_characters_are_escaped_and_backslash_n_text_is_not_null():
    rows = [
        note("insert", 5, 0, "1", ("1", "5", "tab\there", "t")),
        note("insert", 5, 1, "2", ("2", None, "line\nbreak\r\n", None)),
        note("insert", 5, 2, "3", ("3", "7", "back\\slash", "f")),
        note("insert", 5, 3, "4", ("4", None, "\\" + "N", "t")),
        note("insert", 5, 4, "5", ("5", "1", "\\N", "t")),
        note("insert", 5, 5, "6", ("6", "1", "plain", "t")),
        note("insert", 5, 6, "7", ("7", None, "", None)),
        note("update", 5, 7, "8", ["8", "2", "a\\\tb\n", "f"]),
    ]
    encoded, needs_stored_values = encode_rows(NOTES, rows)
    assert not needs_stored_values
    assert encoded == [
        ["1", "5", "tab\\there", "t", "5", "0", STAMP, "I", "\\N", "\\N"],
        ["2", "\\N", "line\\nbreak\\r\\n", "\\N", "5", "1", STAMP, "I", "\\N", "\\N"],
        ["3", "7", "back\\\\slash", "f", "5", "2", STAMP, "I", "\\N", "\\N"],
        ["4", "\\N", "\\\\N", "t", "5", "3", STAMP, "I", "\\N", "\\N"],
        ["5", "1", "\\\\N", "t", "5", "4", STAMP, "I", "\\N", "\\N"],
        ["6", "1", "plain", "t", "5", "5", STAMP, "I", "\\N", "\\N"],
        ["7", "\\N", "", "\\N", "5", "6", STAMP, "I", "\\N", "\\N"],
        ["8", "2", "a\\\\\\tb\\n", "f", "5", "7", STAMP, "U", "\\N", "\\N"],
    ]
    for history in (False, True):
        assert encode_rows(NOTES, rows, history) == encode_rows(NOTES, rows)
        assert "\n".join("\t".join(line) for line in encoded) + "\n" == encode_typed(NOTES, rows, history)[0]


def test_random_text_values_round_trip_through_copy_text():
    pieces = ["a", "N", "\\", "\\N", "\t", "\n", "\r", "\r\n", " ", "é", "\x0c", "\u2028", "{", '"', ","]
    generator = random.Random(20240501)
    layout = RowLayout("label", ("code", "label"), (None, None), ("code",))
    rows, originals = [], []
    for index in range(600):
        code = f"{index}" + "".join(generator.choice(pieces) for _ in range(generator.randint(0, 3)))
        label = None if generator.random() < 0.2 else "".join(
            generator.choice(pieces) for _ in range(generator.randint(0, 6))
        )
        originals.append([code, label])
        rows.append(note("insert", 9, index, code, (code, label), layout, "label"))
    for history in (False, True):
        encoded, _ = encode_rows(LABELS, rows, history)
        assert len(encoded) == len(rows)
        for fields, original in zip(encoded, originals, strict=True):
            assert len(fields) == 2 + 6  # the values, then the bookkeeping columns
            assert [copy_field(field) for field in fields[:2]] == original


def test_delete_without_an_earlier_version_stages_the_key_and_lists_the_other_columns():
    encoded, needs_stored_values = encode_rows(NOTES, [note("delete", 7, 0, "9")])
    assert needs_stored_values
    assert encoded == [["9", "\\N", "\\N", "\\N", "7", "0", STAMP, "D", '{"amount","body","flag"}', "\\N"]]
    deleted = note("delete", 7, 1, "a\tb\\", None, LABELS_LAYOUT, "label")
    encoded, needs_stored_values = encode_rows(LABELS, [deleted])
    assert needs_stored_values
    assert encoded == [["a\\tb\\\\", "\\N", "7", "1", STAMP, "D", '{"label"}', "\\N"]]
    key_only = TableSpec(source="oltp", table="tag", key=("tag",), columns={"tag": "text"},
                         sinks=("warehouse",))
    tag_layout = RowLayout("tag", ("tag",), (None,), ("tag",))
    encoded, needs_stored_values = encode_rows(key_only, [note("delete", 7, 2, "x", None, tag_layout, "tag")])
    assert not needs_stored_values and encoded == [["x", "7", "2", STAMP, "D", "\\N", "\\N"]]


def test_delete_after_a_version_in_the_batch_keeps_its_values():
    rows = [note("insert", 7, 0, "1", ("1", "3", "kept\t", "t")), note("delete", 7, 1, "1")]
    encoded, needs_stored_values = encode_rows(NOTES, rows)
    assert not needs_stored_values
    assert encoded == [["1", "3", "kept\\t", "t", "7", "1", STAMP, "D", "\\N", "\\N"]]
    history, _ = encode_rows(NOTES, rows, history=True)
    assert [line[-3] for line in history] == ["I", "D"] and history[1][:4] == ["1", "3", "kept\\t", "t"]


def test_unchanged_toast_is_filled_from_an_earlier_version_of_the_key():
    rows = [
        note("insert", 8, 0, "1", ("1", "1", "long\ttext", "t")),
        note("update", 8, 1, "1", ["1", "2", UNCHANGED_TOAST, "f"]),
        note("update", 8, 2, "1", ["1", "3", UNCHANGED_TOAST, UNCHANGED_TOAST]),
        note("update", 8, 3, "2", ["2", "4", UNCHANGED_TOAST, None]),  # no earlier version: the stored row's
    ]
    history, needs_stored_values = encode_rows(NOTES, rows, history=True)
    assert needs_stored_values
    assert history == [
        ["1", "1", "long\\ttext", "t", "8", "0", STAMP, "I", "\\N", "\\N"],
        ["1", "2", "long\\ttext", "f", "8", "1", STAMP, "U", "\\N", "\\N"],
        ["1", "3", "long\\ttext", "f", "8", "2", STAMP, "U", "\\N", "\\N"],
        ["2", "4", "\\N", "\\N", "8", "3", STAMP, "U", '{"body"}', "\\N"],
    ]
    mirror, needs_stored_values = encode_rows(NOTES, rows, history=False)
    assert needs_stored_values and mirror == [history[2], history[3]]
    only_batch, needs_stored_values = encode_rows(NOTES, rows[:3], history=False)
    assert not needs_stored_values and only_batch == [history[2]]


@pytest.mark.parametrize("history", [False, True], ids=["mirror", "history"])
def test_row_encoding_equals_the_typed_encoding(history):
    """Random batches: the text rows give the same COPY text as the typed changes they stand for."""
    generator = random.Random(7 + history)
    texts = ["plain", "tab\tx", "nl\nx", "\\N", "back\\", "", None]
    for _ in range(40):
        rows = []
        partial: set[str] = set()  # keys whose latest version in the batch lacks a value
        lsn, index = 10, 0
        for _ in range(generator.randint(1, 25)):
            key = str(generator.randint(1, 4))
            kind = generator.choice(["insert", "update", "update", "delete"])
            if kind == "delete":
                rows.append(note("delete", lsn, index, key))
            else:
                body = generator.choice(texts)
                if kind == "update" and generator.random() < 0.4:
                    body = UNCHANGED_TOAST
                flag = generator.choice(["t", "f", None])
                values = (key, str(generator.randint(-5, 5)), body, flag)
                rows.append(note(kind, lsn, index, key, values))
                if body is not UNCHANGED_TOAST:
                    partial.discard(key)
                elif not any(
                    row.key == key and row.values is not None and row.values[2] is not UNCHANGED_TOAST
                    for row in rows[:-1]
                ):
                    partial.add(key)
            if generator.random() < 0.3:
                lsn, index = lsn + 1, 0
            else:
                index += 1
        text, needs_stored_values = _encode_row_versions(
            _TablePlan.build(replace(NOTES, history=history)),
            _row_versions(_TablePlan.build(replace(NOTES, history=history)), rows), {},
        )
        assert (text, needs_stored_values) == encode_typed(NOTES, rows, history), rows


@pytest.mark.parametrize("history", [False, True], ids=["mirror", "history"])
def test_delete_after_an_unchanged_toast_update_in_one_batch(history):
    rows = [note("update", 8, 0, "1", ["1", "2", UNCHANGED_TOAST, "t"]), note("delete", 8, 1, "1")]
    encoded, needs_stored_values = encode_rows(NOTES, rows, history)
    assert needs_stored_values
    assert encoded[-1] == ["1", "2", "\\N", "t", "8", "1", STAMP, "D", '{"body"}', "\\N"]
    text, _ = encode_typed(NOTES, rows, history)
    assert "\n".join("\t".join(line) for line in encoded) + "\n" == text


# --------------------------------------------------------------------------------------------
# 7. Input checks of apply_rows


def refusing_factory():
    raise AssertionError("bad input must be refused before a connection is opened")


def rows_plans():
    # as prepare() would register them, without a database
    return {(spec.source, spec.table): _TablePlan.build(spec) for spec in (NOTES, LABELS)}


def rows_sink():
    sink = WarehouseSink(refusing_factory)
    sink._plans.update(rows_plans())
    return sink


GOOD = note("insert", 10, 0, "1", ("1", "1", "a", "t"))


@pytest.mark.parametrize(
    ("rows", "pattern"),
    [
        pytest.param([note("insert", 10, 1, "1", GOOD.values), GOOD], "position order", id="out-of-order"),
        pytest.param([GOOD, note("insert", 9, 5, "2", ("2", "1", "a", "t"))], "position order",
                     id="lower-commit-lsn"),
        pytest.param([GOOD, note("insert", 10, 0, "2", ("2", "1", "a", "t"))], "without repeats",
                     id="repeated-position"),
        pytest.param([note("update", 10, 0, "2", ("2", "1", "a", "t")), note("delete", 10, 0, "1")],
                     "without repeats", id="delete-after-update-at-one-position"),
        pytest.param([note("insert", 10, 0, "1", GOOD.values, table="unknown")],
                     "no warehouse spec for oltp.unknown",
                     id="unknown-table"),
        pytest.param([note("insert", 10, 0, "1", GOOD.values, RowLayout("note", ("note_id", "amount", "body"),
                                                                       (None, None, None), ("note_id",)))],
                     "rows carry columns", id="layout-columns"),
        pytest.param([note("insert", 10, 0, "1", GOOD.values,
                           RowLayout("note", NOTES_LAYOUT.columns, NOTES_LAYOUT.parsers, ("amount",)))],
                     "rows carry columns", id="layout-key"),
        pytest.param([note("insert", 10, 0, "1", GOOD.values, LABELS_LAYOUT)], "rows carry columns",
                     id="other-tables-layout"),
        pytest.param([note("insert", 10, 0, "1", GOOD.values, source="reference")],
                     "row for source 'reference' at .* in a batch for 'oltp'", id="other-source"),
        pytest.param([GOOD, note("insert", 10, 1, "2", ("2", "1", "a", "t"), source="reference")],
                     "row for source 'reference'", id="other-source-same-layout"),
        pytest.param([note("snapshot", 10, 0, "1", GOOD.values)], "unknown change kind 'snapshot'",
                     id="snapshot"),
        pytest.param([note("upsert", 10, 0, "1", GOOD.values)], "unknown change kind 'upsert'",
                     id="unknown-kind"),
        pytest.param([GOOD, GOOD.typed()], "expected CapturedRow, got CapturedChange", id="typed-change"),
    ],
)
def test_apply_rows_refuses_bad_batches_before_connecting(rows, pattern):
    with pytest.raises(WarehouseSinkError, match=pattern):
        rows_sink().apply_rows("oltp", rows)
    assert gc.isenabled()


def test_key_move_at_one_position_and_truncates_are_accepted():
    rows = [
        GOOD,
        note("delete", 11, 0, "1"),
        note("update", 11, 0, "2", ("2", "1", "a", "t")),
        note("truncate", 11, 1, None),
        note("insert", 11, 2, "x", ("x", "y"), LABELS_LAYOUT, "label"),
    ]
    assert validated_rows(rows_plans(), "oltp", rows) == rows


@pytest.mark.parametrize(
    "bad",
    [
        note("insert", 10, 1, "2", ("2", "1", "a", "t"), table="unknown"),
        note("insert", 10, 1, "2", ("2", "1", "a", "t"), table="label"),
        note("snapshot", 10, 1, "2", ("2", "1", "a", "t")),
        note("upsert", 10, 1, "2", ("2", "1", "a", "t")),
    ],
    ids=["unknown-table", "other-table", "snapshot", "unknown-kind"],
)
def test_every_row_is_checked_not_only_the_first_of_its_layout(bad):
    with pytest.raises(WarehouseSinkError):
        validated_rows(rows_plans(), "oltp", [GOOD, bad])


# --------------------------------------------------------------------------------------------
# 8. The shared garbage-collector pause


@pytest.fixture
def collector_enabled():
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    assert collector._depth == 0
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


def test_nested_pauses_restore_the_collector_only_at_the_outermost_exit(collector_enabled):
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
            with collector_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_pause_restores_the_collector_after_an_error(collector_enabled):
    with pytest.raises(RuntimeError), collector_paused(), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled(collector_enabled):
    gc.disable()
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert not gc.isenabled()
    gc.enable()
    with collector_paused():  # the state is taken afresh by the next first pause
        assert not gc.isenabled()
    assert gc.isenabled()


@pytest.mark.parametrize("first_out", ["first_in", "second_in"])
def test_pauses_of_two_threads_overlap(collector_enabled, first_out):
    """The collector comes back only when the last of two overlapping pauses ends, whichever it is."""
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()
    observed = []

    def other_thread():
        with collector_paused():
            entered.set()
            release.wait(5)
        observed.append(gc.isenabled())
        finished.set()

    thread = threading.Thread(target=other_thread)
    if first_out == "first_in":
        thread.start()
        assert entered.wait(5)
        with collector_paused():
            release.set()
            assert finished.wait(5)
            assert observed == [False]  # the other thread left first: still paused for this one
            assert not gc.isenabled()
        assert gc.isenabled()
    else:
        with collector_paused():
            thread.start()
            assert entered.wait(5)
        assert not gc.isenabled()  # this thread left first: the other one still holds the pause
        release.set()
        assert finished.wait(5)
        assert observed == [True]
        assert gc.isenabled()
    thread.join(5)


def test_many_threads_pausing_concurrently_leave_the_collector_as_it_was(collector_enabled):
    barrier = threading.Barrier(8)
    enabled_inside = []

    def worker():
        barrier.wait(5)
        for _ in range(2000):
            with collector_paused():
                if gc.isenabled():
                    enabled_inside.append(threading.get_ident())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert enabled_inside == []
    assert gc.isenabled()


# --------------------------------------------------------------------------------------------
# 9. Token base32


def test_base32_lower_equals_base64_b32encode():
    generator = random.Random(32)
    digests = [bytes(_TOKEN_MAC_BYTES), b"\xff" * _TOKEN_MAC_BYTES, bytes(range(_TOKEN_MAC_BYTES))]
    digests += [generator.randbytes(_TOKEN_MAC_BYTES) for _ in range(5000)]
    digests += [bytes([1 << bit]).rjust(_TOKEN_MAC_BYTES - offset, b"\0").ljust(_TOKEN_MAC_BYTES, b"\0")
                for bit in range(8) for offset in range(_TOKEN_MAC_BYTES)]
    for digest in digests:
        assert _base32_lower(digest) == base64.b32encode(digest).decode().lower(), digest.hex()


# -- key changes that leave a large value unchanged ---------------------------------------------------


def moved(lsn, index, new_key, old_key, values):
    row = note("update", lsn, index, new_key, values)
    row.moved_from = old_key
    return row


@pytest.mark.parametrize("history", [None, NOTES.table], ids=["mirror", "history"])
def test_a_key_change_takes_unchanged_values_from_the_old_keys_stored_row(history):
    rows = [note("delete", 8, 0, "1"), moved(8, 0, "2", "1", ["2", "5", UNCHANGED_TOAST, "t"])]
    encoded, fill = encode_rows(NOTES, rows, history=history)
    # The new key names the old one: its missing body comes from the row stored under key 1.
    assert encoded[-1] == ["2", "5", "\\N", "t", "8", "0", STAMP, "U", '{"body"}', '{"1"}']
    assert fill & FILL_BY_OLD_KEY
    typed_text, typed_fill = encode_typed(NOTES, rows, history=history)
    assert typed_text.splitlines()[-1].split("\t")[-2:] == ['{"body"}', '{"1"}'] and typed_fill & FILL_BY_OLD_KEY


@pytest.mark.parametrize("history", [None, NOTES.table], ids=["mirror", "history"])
def test_a_key_change_takes_unchanged_values_from_the_old_keys_version_in_the_batch(history):
    rows = [
        note("insert", 8, 0, "1", ("1", "1", "long text", "t")),
        note("delete", 9, 0, "1"),
        moved(9, 0, "2", "1", ["2", "5", UNCHANGED_TOAST, "t"]),
    ]
    encoded, _ = encode_rows(NOTES, rows, history=history)
    assert encoded[-1] == ["2", "5", "long text", "t", "9", "0", STAMP, "U", "\\N", "\\N"]
    typed_text, _ = encode_typed(NOTES, rows, history=history)
    assert typed_text.splitlines()[-1].split("\t")[:4] == ["2", "5", "long text", "t"]


def test_a_key_moved_twice_in_one_batch_follows_the_chain_to_the_stored_row():
    rows = [
        note("delete", 8, 0, "1"), moved(8, 0, "2", "1", ["2", "5", UNCHANGED_TOAST, "t"]),
        note("delete", 9, 0, "2"), moved(9, 0, "3", "2", ["3", "6", UNCHANGED_TOAST, "f"]),
    ]
    encoded, _ = encode_rows(NOTES, rows)
    assert encoded[-1][-2:] == ['{"body"}', '{"1"}']  # key 2 exists nowhere before the batch
    typed_text, _ = encode_typed(NOTES, rows)
    assert typed_text.splitlines()[-1].split("\t")[-2:] == ['{"body"}', '{"1"}']


def test_a_key_change_that_sends_every_value_needs_nothing_stored():
    rows = [note("delete", 8, 0, "1"), moved(8, 0, "2", "1", ("2", "5", "body", "t"))]
    encoded, fill = encode_rows(NOTES, rows)
    assert encoded[-1][-2:] == ["\\N", "\\N"]
    assert not fill & FILL_BY_OLD_KEY


def test_the_typed_change_of_a_key_change_carries_the_old_key():
    change = moved(8, 0, "2", "1", ["2", "5", UNCHANGED_TOAST, "t"]).typed()
    assert change.key == {"note_id": 2} and change.moved_from == {"note_id": 1} and change.unchanged == {"body"}
