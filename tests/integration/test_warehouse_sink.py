"""WarehouseSink against a real, freshly created warehouse database (role warehouse_owner)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg2
import pytest

from paydata import settings
from paydata.cdc.model import CapturedChange, Position, TableSpec
from paydata.cdc.sinks.warehouse import WarehouseSink, WarehouseSinkError

pytestmark = pytest.mark.integration

SOURCE = "oltp"
COMMIT_TIME = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

CHARGE = TableSpec(
    source=SOURCE,
    table="charge",
    key=("charge_id",),
    columns={
        "charge_id": "bigint",
        "amount": "bigint",
        "status": "text",
        "notes": "text",
        "customer_id": "text",
    },
    sinks=("warehouse", "mongo"),
)
MERCHANT = TableSpec(
    source=SOURCE,
    table="merchant",
    key=("merchant_id",),
    columns={"merchant_id": "bigint", "name": "text", "profile": "jsonb"},
    sinks=("warehouse",),
    history=True,
)
ONLY_MONGO = TableSpec(
    source=SOURCE, table="dispute", key=("dispute_id",), columns={"dispute_id": "bigint"}, sinks=("mongo",)
)


@pytest.fixture
def warehouse_db(stack, fresh_database):
    return fresh_database(prefix="wh_sink", owner=settings.DATABASE_OWNERS["warehouse"])


@pytest.fixture
def connect(warehouse_db):
    opened = []

    def _connect():
        conn = settings.pg_connect(settings.WAREHOUSE_CONN_ID, dbname=warehouse_db)
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        if not conn.closed:
            conn.close()


@pytest.fixture(params=["one_chunk", "chunks_of_2"])
def sink(connect, request):
    created = WarehouseSink(connect)
    if request.param == "chunks_of_2":
        # Every batch is staged in several chunks, loaded while the next one is encoded.
        created._rows_per_chunk = 2
    created.prepare([CHARGE, MERCHANT, ONLY_MONGO])
    yield created
    created.close()


@pytest.fixture
def reader(connect):
    conn = connect()
    conn.autocommit = True
    return conn


def change(kind, lsn, index, key=None, row=None, table="charge", unchanged=frozenset()):
    key_column = "charge_id" if table == "charge" else "merchant_id"
    return CapturedChange(
        source=SOURCE,
        table=table,
        kind=kind,
        position=Position(lsn, index),
        commit_time=COMMIT_TIME,
        key={} if key is None else {key_column: key},
        row=row,
        unchanged=frozenset(unchanged),
    )


def charge_row(charge_id, amount=100, status="pending", notes="n", customer_id="tok"):
    return {"charge_id": charge_id, "amount": amount, "status": status, "notes": notes, "customer_id": customer_id}


def fetch(conn, query, params=None):
    with conn.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def mirror(conn):
    """charge_id -> (amount, status, notes, customer_id, deleted, lsn, index)."""
    rows = fetch(
        conn,
        "SELECT charge_id, amount, status, notes, customer_id, _is_deleted, _commit_lsn, _index_in_txn "
        "FROM staging.oltp_charge ORDER BY charge_id",
    )
    return {row[0]: row[1:] for row in rows}


def checksum(conn):
    """A digest of every staging row and offset, bookkeeping columns included."""
    return fetch(
        conn,
        "SELECT (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY charge_id), '')) FROM staging.oltp_charge t),"
        " (SELECT md5(coalesce(string_agg(h::text, '|' ORDER BY merchant_id, _commit_lsn, _index_in_txn), ''))"
        "  FROM staging.oltp_merchant_history h),"
        " (SELECT md5(coalesce(string_agg(m::text, '|' ORDER BY merchant_id), '')) FROM staging.oltp_merchant m),"
        " (SELECT md5(coalesce(string_agg(o::text, '|' ORDER BY source), '')) FROM staging.cdc_offsets o)",
    )[0]


def test_layout_offsets_and_basic_changes(sink, reader):
    assert sink.applied_position(SOURCE) == Position.zero()
    tables = {row[0] for row in fetch(reader, "SELECT tablename FROM pg_tables WHERE schemaname = 'staging'")}
    assert tables == {"cdc_offsets", "oltp_charge", "oltp_merchant", "oltp_merchant_history"}

    applied = sink.apply(
        SOURCE,
        [
            change("insert", 100, 0, 1, charge_row(1)),
            change("insert", 100, 1, 2, charge_row(2, amount=200)),
            change("update", 200, 0, 1, charge_row(1, status="succeeded")),
            change("delete", 300, 0, 2),
        ],
    )
    assert applied == Position(300, 0)
    assert sink.applied_position(SOURCE) == Position(300, 0)
    assert mirror(reader) == {
        1: (100, "succeeded", "n", "tok", False, 200, 0),
        2: (200, "pending", "n", "tok", True, 300, 0),  # tombstone keeps the last values
    }
    commit_time, loaded_at = fetch(reader, "SELECT _commit_time, _loaded_at FROM staging.oltp_charge WHERE charge_id = 1")[0]
    assert commit_time == COMMIT_TIME and loaded_at is not None


def test_delete_of_unknown_key_and_reinsert(sink, reader):
    sink.apply(SOURCE, [change("delete", 100, 0, 7)])
    assert mirror(reader) == {7: (None, None, None, None, True, 100, 0)}
    sink.apply(SOURCE, [change("insert", 200, 0, 7, charge_row(7, amount=5))])
    assert mirror(reader)[7] == (5, "pending", "n", "tok", False, 200, 0)
    # delete then re-insert inside one batch: the re-insert wins and clears the tombstone
    sink.apply(SOURCE, [change("delete", 300, 0, 7), change("insert", 300, 1, 7, charge_row(7, amount=6))])
    assert mirror(reader)[7] == (6, "pending", "n", "tok", False, 300, 1)


def test_snapshot_rows_then_stream(sink, reader):
    snapshot_lsn = 1000
    sink.apply(SOURCE, [change("snapshot", snapshot_lsn, -1, i, charge_row(i)) for i in (1, 2)])
    assert sink.applied_position(SOURCE) == Position(snapshot_lsn, -1)
    # the snapshot's next chunk shares the stored position and must still land; a repeat changes nothing
    sink.apply(SOURCE, [change("snapshot", snapshot_lsn, -1, 3, charge_row(3))])
    before = checksum(reader)
    sink.apply(SOURCE, [change("snapshot", snapshot_lsn, -1, i, charge_row(i, amount=1)) for i in (1, 2, 3)])
    assert checksum(reader) == before and sorted(mirror(reader)) == [1, 2, 3]
    sink.apply(SOURCE, [change("update", snapshot_lsn, 0, 2, charge_row(2, status="failed"))])
    rows = mirror(reader)
    assert rows[1][-2:] == (snapshot_lsn, -1) and rows[2] == (100, "failed", "n", "tok", False, snapshot_lsn, 0)


def test_replay_of_same_batch_changes_nothing(sink, reader):
    batch = [change("insert", 100, i, i, charge_row(i)) for i in range(5)]
    batch += [change("update", 200, 0, 1, charge_row(1, amount=9)), change("delete", 300, 0, 2)]
    batch += [change("insert", 400, 0, 1, {"merchant_id": 1, "name": "m", "profile": {"a": 1}}, "merchant")]
    assert sink.apply(SOURCE, batch) == Position(400, 0)
    before = checksum(reader)
    assert sink.apply(SOURCE, batch) == Position(400, 0)
    assert sink.apply(SOURCE, list(reversed(batch))) == Position(400, 0)
    assert checksum(reader) == before


def test_overlapping_replay_applies_only_the_new_part(sink, reader):
    history = [
        change("insert", 100 + i, 0, 1, {"merchant_id": 1, "name": f"v{i}", "profile": None}, "merchant")
        for i in range(15)
    ]
    sink.apply(SOURCE, history[:10])
    sink.apply(SOURCE, history[5:])
    rows = fetch(reader, "SELECT name, _commit_lsn FROM staging.oltp_merchant_history ORDER BY _commit_lsn")
    assert rows == [(f"v{i}", 100 + i) for i in range(15)]
    assert fetch(reader, "SELECT name, _commit_lsn FROM staging.oltp_merchant") == [("v14", 114)]
    assert sink.applied_position(SOURCE) == Position(114, 0)


def test_out_of_order_batch_is_applied_by_position(sink, reader):
    ordered = [change("insert", 100, 0, 1, charge_row(1, amount=1))]
    ordered += [change("update", 100 + i, 0, 1, charge_row(1, amount=1 + i)) for i in range(1, 20)]
    ordered += [change("delete", 200, 0, 1), change("insert", 200, 1, 1, charge_row(1, amount=77))]
    shuffled = ordered[:]
    random.Random(7).shuffle(shuffled)
    assert sink.apply(SOURCE, shuffled) == Position(200, 1)
    assert mirror(reader) == {1: (77, "pending", "n", "tok", False, 200, 1)}


def test_unchanged_toast_keeps_the_stored_value(sink, reader):
    big = "x" * 5000
    sink.apply(SOURCE, [change("insert", 100, 0, 1, charge_row(1, notes=big))])
    toast_update = {k: v for k, v in charge_row(1, status="succeeded").items() if k != "notes"}
    sink.apply(SOURCE, [change("update", 200, 0, 1, toast_update, unchanged={"notes"})])
    assert mirror(reader)[1] == (100, "succeeded", big, "tok", False, 200, 0)
    # a key never seen before: nothing to keep, the column stays NULL
    sink.apply(SOURCE, [change("update", 300, 0, 5, {**toast_update, "charge_id": 5}, unchanged={"notes"})])
    assert mirror(reader)[5][2] is None


def test_insert_and_toast_update_in_one_batch_are_merged(sink, reader):
    first = {k: v for k, v in charge_row(1, amount=2).items() if k != "notes"}
    second = {k: v for k, v in charge_row(1, amount=3, notes="kept").items() if k not in {"notes", "customer_id"}}
    sink.apply(
        SOURCE,
        [
            change("insert", 100, 0, 1, charge_row(1, notes="long text")),
            change("update", 100, 1, 1, first, unchanged={"notes"}),
            change("update", 100, 2, 1, second, unchanged={"notes", "customer_id"}),
            change("insert", 100, 3, 2, charge_row(2, notes="two")),
            change("update", 100, 4, 2, {k: v for k, v in charge_row(2).items() if k != "notes"}, unchanged={"notes"}),
            change("delete", 100, 5, 2),
        ],
    )
    assert mirror(reader) == {
        1: (3, "pending", "long text", "tok", False, 100, 2),
        2: (100, "pending", "two", "tok", True, 100, 5),
    }


def test_history_table_records_every_version(sink, reader):
    def merchant(lsn, index, kind, name=None, unchanged=frozenset()):
        row = None
        if kind not in {"delete", "truncate"}:
            row = {"merchant_id": 1, "name": name}
            if "profile" not in unchanged:
                row["profile"] = {"tier": name}
        return change(kind, lsn, index, None if kind == "truncate" else 1, row, "merchant", unchanged)

    sink.apply(SOURCE, [merchant(50, -1, "snapshot", "s"), merchant(100, 0, "update", "a")])
    sink.apply(
        SOURCE,
        [
            merchant(200, 0, "update", "b", unchanged={"profile"}),  # profile from the stored row
            merchant(200, 1, "update", "c"),
            merchant(200, 2, "update", "d", unchanged={"profile"}),  # profile from the batch
            merchant(300, 0, "delete"),
            merchant(400, 0, "insert", "e"),
            merchant(500, 0, "truncate"),
            merchant(600, 0, "insert", "f"),
        ],
    )
    rows = fetch(
        reader,
        "SELECT _op, name, profile, _is_deleted, _commit_lsn, _index_in_txn FROM staging.oltp_merchant_history "
        "ORDER BY _commit_lsn, _index_in_txn",
    )
    assert rows == [
        ("S", "s", {"tier": "s"}, False, 50, -1),
        ("U", "a", {"tier": "a"}, False, 100, 0),
        ("U", "b", {"tier": "a"}, False, 200, 0),
        ("U", "c", {"tier": "c"}, False, 200, 1),
        ("U", "d", {"tier": "c"}, False, 200, 2),
        ("D", "d", {"tier": "c"}, True, 300, 0),
        ("I", "e", {"tier": "e"}, False, 400, 0),
        ("T", "e", {"tier": "e"}, True, 500, 0),
        ("I", "f", {"tier": "f"}, False, 600, 0),
    ]
    assert fetch(reader, "SELECT name, _is_deleted, _commit_lsn FROM staging.oltp_merchant") == [("f", False, 600)]


def test_truncate_tombstones_every_row(sink, reader):
    sink.apply(SOURCE, [change("insert", 100, i, i, charge_row(i)) for i in range(1, 4)] + [change("delete", 150, 0, 3)])
    sink.apply(SOURCE, [change("truncate", 200, 0), change("insert", 200, 1, 9, charge_row(9))])
    assert mirror(reader) == {
        1: (100, "pending", "n", "tok", True, 200, 0),
        2: (100, "pending", "n", "tok", True, 200, 0),
        3: (100, "pending", "n", "tok", True, 150, 0),  # already a tombstone: keeps its delete position
        9: (100, "pending", "n", "tok", False, 200, 1),
    }


def test_prepare_twice_is_a_no_op_and_adds_new_columns(sink, reader, connect):
    sink.apply(SOURCE, [change("insert", 100, 0, 1, charge_row(1))])
    before = checksum(reader)
    catalog = "SELECT attrelid::regclass::text, attname, format_type(atttypid, atttypmod) FROM pg_attribute " \
              "WHERE attrelid::regclass::text LIKE 'staging.%' AND attnum > 0 ORDER BY 1, 2"
    columns_before = fetch(reader, catalog)
    other = WarehouseSink(connect)
    other.prepare([CHARGE, MERCHANT])
    assert fetch(reader, catalog) == columns_before and checksum(reader) == before

    wider = TableSpec(
        source=SOURCE, table="charge", key=("charge_id",),
        columns={**CHARGE.columns, "fee": "numeric(20,10)"}, sinks=("warehouse",),
    )
    other.prepare([wider])
    assert ("staging.oltp_charge", "fee", "numeric(20,10)") in fetch(reader, catalog)
    other.apply(SOURCE, [change("update", 200, 0, 1, {**charge_row(1), "fee": Decimal("0.0000000001")})])
    assert fetch(reader, "SELECT fee, amount FROM staging.oltp_charge") == [(Decimal("0.0000000001"), 100)]

    retyped = TableSpec(source=SOURCE, table="charge", key=("charge_id",),
                        columns={**CHARGE.columns, "amount": "text"}, sinks=("warehouse",))
    with pytest.raises(WarehouseSinkError, match="amount has type bigint"):
        other.prepare([retyped])
    rekeyed = TableSpec(source=SOURCE, table="charge", key=("charge_id", "status"),
                        columns=CHARGE.columns, sinks=("warehouse",))
    with pytest.raises(WarehouseSinkError, match="changing a key"):
        other.prepare([rekeyed])
    other.close()


class FailingBeforeCommit(WarehouseSink):
    """Fails after every data statement ran, right before the offset write and commit."""

    def __init__(self, conn_factory, close_connection):
        super().__init__(conn_factory)
        self.close_connection = close_connection

    def _store_offset(self, cursor, source, position):
        if self.close_connection:
            cursor.connection.close()
            raise psycopg2.InterfaceError("connection closed mid-apply")
        raise RuntimeError("crash before commit")


@pytest.mark.parametrize("close_connection", [False, True])
def test_crash_mid_apply_leaves_everything_unchanged(sink, reader, connect, close_connection):
    sink.apply(SOURCE, [change("insert", 100, 0, 1, charge_row(1))])
    before = checksum(reader)
    crashing = FailingBeforeCommit(connect, close_connection)
    crashing.prepare([CHARGE, MERCHANT])
    batch = [
        change("update", 200, 0, 1, charge_row(1, amount=2)),
        change("insert", 200, 1, 2, charge_row(2)),
        change("insert", 200, 2, 3, {"merchant_id": 3, "name": "m", "profile": None}, "merchant"),
    ]
    with pytest.raises((RuntimeError, psycopg2.InterfaceError)):
        crashing.apply(SOURCE, batch)
    assert checksum(reader) == before
    assert sink.applied_position(SOURCE) == Position(100, 0)
    # the same batch applies cleanly afterwards (also through the sink that failed, on a new connection)
    crashing.__class__ = WarehouseSink
    assert crashing.apply(SOURCE, batch) == Position(200, 2)
    assert mirror(reader)[1][0] == 2 and 2 in mirror(reader)
    crashing.close()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (change("insert", 200, 1, 5, {"dispute_id": 5}, table="dispute"), "no warehouse spec for oltp.dispute"),
        (change("insert", 200, 1, 5, {"x": 1}, table="unknown"), "no warehouse spec for oltp.unknown"),
        (change("delete", 200, 1), "expected non-NULL values for exactly"),
        (change("insert", 200, 1, 5, {**charge_row(5), "extra": 1}), r"column\(s\) \['extra'\] not in the spec"),
        (change("update", 200, 1, 5, {"charge_id": 5, "amount": 1}), "lacks column"),
        (change("insert", 200, 1, 5, charge_row(6)), "key column 'charge_id' is 5 in the key but 6"),
        (change("insert", 200, 1, 5, charge_row(5, notes=object())), "cannot store a value of type object"),
        (change("insert", 200, 1, 5, charge_row(5, notes="nul\x00")), "NUL"),
        (change("insert", 200, 0, 5, charge_row(5)), "two changes at position"),
        (change("upsert", 200, 1, 5, charge_row(5)), "unknown change kind"),
    ],
)
def test_bad_input_applies_nothing(sink, reader, bad, message):
    sink.apply(SOURCE, [change("insert", 100, 0, 1, charge_row(1))])
    before = checksum(reader)
    with pytest.raises(WarehouseSinkError, match=message):
        # with chunks of 2 the bad change is encoded after earlier chunks were already loaded
        earlier = [change("insert", 150, index, 10 + index, charge_row(10 + index)) for index in range(4)]
        sink.apply(SOURCE, [*earlier, change("insert", 200, 0, 4, charge_row(4)), bad])
    assert checksum(reader) == before
    assert sink.applied_position(SOURCE) == Position(100, 0)


def test_wrong_source_and_missing_prepare(connect, reader):
    fresh = WarehouseSink(connect)
    assert fresh.applied_position(SOURCE) == Position.zero()
    with pytest.raises(WarehouseSinkError, match="prepare"):
        fresh.apply(SOURCE, [change("insert", 1, 0, 1, charge_row(1))])
    fresh.prepare([CHARGE])
    with pytest.raises(WarehouseSinkError, match="in a batch for 'reference'"):
        fresh.apply("reference", [change("insert", 1, 0, 1, charge_row(1))])
    fresh.close()


def test_every_column_type_round_trips(connect, reader):
    spec = TableSpec(
        source="reference",
        table="all_types",
        key=("id", "code"),
        columns={
            "id": "bigint", "code": "character(3)", "small": "smallint", "whole": "integer",
            "rate": "numeric(20,10)", "at": "timestamp with time zone", "naive": "timestamp without time zone",
            "day": "date", "ip": "inet", "blob": "bytea", "flag": "boolean", "doc": "jsonb", "ident": "uuid",
            "label": "character varying(40)", "body": "text", "tags": "text[]", "ratio": "double precision",
        },
        sinks=("warehouse",),
    )
    values = {
        "id": 1, "code": "EUR", "small": -3, "whole": 2**31 - 1, "rate": Decimal("12345.0000000001"),
        "at": datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC), "naive": datetime(2000, 1, 1, 0, 0, 1),
        "day": date(1999, 12, 31), "ip": "2001:db8::1", "blob": b"\x00\x01\\\t\n\xff", "flag": False,
        "doc": {"quote": 'a"b', "tab": "a\tb", "list": [1, None, "ü"]}, "ident": uuid.UUID(int=42),
        "label": "Zürich\ttab", "body": "line1\nline2\r\n\\N back\\slash \N{SNOWMAN} \\x00",
        "tags": ["a,b", 'q"uote', None, "back\\slash", "{brace}", "NULL"], "ratio": float("-inf"),
    }
    sink = WarehouseSink(connect)
    sink.prepare([spec])
    key = {"id": 1, "code": "EUR"}
    sink.apply("reference", [CapturedChange("reference", "all_types", "insert", Position(10, 0), COMMIT_TIME,
                                            key, values)])
    reader.cursor().execute("SET TIME ZONE 'UTC'")
    stored = fetch(reader, "SELECT " + ", ".join(spec.columns) + " FROM staging.reference_all_types")[0]
    got = dict(zip(spec.columns, stored, strict=True))
    got["blob"] = bytes(got["blob"])
    got["ident"] = uuid.UUID(got["ident"])
    assert got == values
    nulls = {column: None for column in spec.columns if column not in key} | {"id": 2, "code": "USD"}
    sink.apply("reference", [CapturedChange("reference", "all_types", "insert", Position(11, 0), COMMIT_TIME,
                                            {"id": 2, "code": "USD"}, nulls)])
    assert fetch(reader, "SELECT count(*) FROM staging.reference_all_types WHERE id = 2 AND body IS NULL "
                         "AND doc IS NULL AND tags IS NULL")[0][0] == 1
    sink.close()


def test_the_loader_applies_to_a_staging_layout_the_owner_defined_and_cannot_define_one(
        warehouse_db, connect, reader, admin_connect):
    """The CDC run's connection is the loader's: prepare() finds the owner's definitions with reads
    only, apply() writes, truncates and appends history; a new table needs the migrate step."""
    from paydata.cdc.deadletters import PostgresDeadLetterStore
    from paydata.cdc.ledger import PostgresConfirmLedger
    from paydata.cdc.sinks.warehouse.sink import DEFINE_COMMAND
    from paydata.migrations import apply_migrations

    owner = connect()
    apply_migrations(owner, "warehouse")
    owner_sink = WarehouseSink(connect)
    owner_sink.prepare([CHARGE, MERCHANT])
    owner_sink.close()
    for store in (PostgresConfirmLedger(connect), PostgresDeadLetterStore(connect)):
        store.define()
        store.close()
    admin = admin_connect(warehouse_db)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'GRANT CONNECT ON DATABASE "{warehouse_db}" TO warehouse_loader')

    def loader_connect():
        return settings.pg_connect(settings.WAREHOUSE_LOADER_CONN_ID, dbname=warehouse_db)

    loader = WarehouseSink(loader_connect)
    try:
        loader.prepare([CHARGE, MERCHANT])
        loader.apply(SOURCE, [change("insert", 100, 0, 1, charge_row(1)), change("insert", 100, 1, 2, charge_row(2)),
                              change("insert", 100, 2, 7, {"merchant_id": 7, "name": "m", "profile": {}},
                                     table="merchant")])
        loader.apply(SOURCE, [change("truncate", 200, 0), change("insert", 200, 1, 9, charge_row(9))])
        assert loader.applied_position(SOURCE) == Position(200, 1)
        assert mirror(reader)[1][4] is True and mirror(reader)[9][4] is False
        assert fetch(reader, "SELECT count(*) FROM staging.oltp_merchant_history") == [(1,)]

        wider = TableSpec(source=SOURCE, table="charge", key=("charge_id",),
                          columns={**CHARGE.columns, "fee": "bigint"}, sinks=("warehouse",))
        refund = TableSpec(source=SOURCE, table="refund", key=("refund_id",), columns={"refund_id": "bigint"},
                           sinks=("warehouse",))
        for spec in (wider, refund):
            with pytest.raises(WarehouseSinkError, match=DEFINE_COMMAND.replace(".", r"\.")):
                loader.prepare([spec])
    finally:
        loader.close()
    ledger = PostgresConfirmLedger(loader_connect)
    try:
        ledger.reset(SOURCE, "slot_a", 100, None)
        assert ledger.entry(SOURCE).confirmed_lsn == 100
    finally:
        ledger.close()
    assert fetch(reader, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'staging'") == [
        ("warehouse_owner",)], "the loader created nothing"
