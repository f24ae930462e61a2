"""WarehouseSink.apply_rows (values as PostgreSQL output text) against a real warehouse database.

Every batch is applied twice: as text rows through ``apply_rows`` for one source, and as the typed
changes the rows stand for (``CapturedRow.typed()``) through ``apply`` for a second source. The two
sources' staging tables (mirror, history) and offsets must end up identical.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from psycopg2 import sql

from paydata import settings
from paydata.cdc import types as pgtypes
from paydata.cdc.model import CapturedRow, Position, RowLayout, TableSpec
from paydata.cdc.pgoutput import UNCHANGED_TOAST
from paydata.cdc.sinks.warehouse import WarehouseSink, WarehouseSinkError

pytestmark = pytest.mark.integration

ROWS = "rowsrc"  # applied with apply_rows
TYPED = "typsrc"  # the same changes, typed, applied with apply
EPOCH = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

CHARGE_COLUMNS = {
    "charge_id": "bigint",
    "customer_id": "text",
    "captured": "boolean",
    "amount": "numeric(12,2)",
    "created_at": "timestamp with time zone",
    "memo": "text",
}
MERCHANT_COLUMNS = {"merchant_id": "bigint", "name": "text", "profile": "text", "updated_at": "timestamptz"}
FX_COLUMNS = {"base": "character(3)", "quote": "character(3)", "day": "date", "rate": "numeric(20,10)"}

INT8 = pgtypes.parser_for(pgtypes.INT8)
LAYOUTS = {
    "charge": RowLayout(
        "charge", tuple(CHARGE_COLUMNS),
        (INT8, None, pgtypes.parser_for(pgtypes.BOOL), pgtypes.parser_for(pgtypes.NUMERIC),
         pgtypes.parser_for(pgtypes.TIMESTAMPTZ), None),
        ("charge_id",),
    ),
    "merchant": RowLayout(
        "merchant", tuple(MERCHANT_COLUMNS), (INT8, None, None, pgtypes.parser_for(pgtypes.TIMESTAMPTZ)),
        ("merchant_id",),
    ),
    "fx_rate": RowLayout(
        "fx_rate", tuple(FX_COLUMNS), (None, None, pgtypes.parser_for(pgtypes.DATE),
                                       pgtypes.parser_for(pgtypes.NUMERIC)),
        ("base", "quote", "day"),
    ),
}
TRICKY = "tab\there\nnew line\r\nback\\slash \\N \\x00 \\. Zürich \N{SNOWMAN}"
LONG = "toasted " * 2000


def specs(source):
    return [
        TableSpec(source, "charge", ("charge_id",), CHARGE_COLUMNS, ("warehouse",)),
        TableSpec(source, "merchant", ("merchant_id",), MERCHANT_COLUMNS, ("warehouse",), history=True),
        TableSpec(source, "fx_rate", ("base", "quote", "day"), FX_COLUMNS, ("warehouse",)),
    ]


@pytest.fixture
def warehouse_db(stack, fresh_database):
    return fresh_database(prefix="wh_rows", owner=settings.DATABASE_OWNERS["warehouse"])


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
    created.prepare(specs(ROWS) + specs(TYPED))
    yield created
    created.close()


@pytest.fixture
def reader(connect):
    conn = connect()
    conn.autocommit = True
    return conn


# --- rows ---------------------------------------------------------------------------------------------


def row(table, kind, lsn, index, key=None, values=None):
    has_unchanged = kind == "update" and any(value is UNCHANGED_TOAST for value in values)
    commit_time = EPOCH + timedelta(seconds=lsn)
    return CapturedRow(ROWS, table, kind, lsn, index, commit_time, key, values, LAYOUTS[table], has_unchanged)


def charge(kind, lsn, index, charge_id, customer="tok_a", captured="t", amount="10.00",
           created="2024-05-01 10:00:00+02", memo="m"):
    values = None if kind == "delete" else (str(charge_id), customer, captured, amount, created, memo)
    return row("charge", kind, lsn, index, str(charge_id), values)


def merchant(kind, lsn, index, merchant_id=1, name="m", profile="p", updated="2024-05-01 09:30:00.123456+00"):
    values = None if kind == "delete" else (str(merchant_id), name, profile, updated)
    return row("merchant", kind, lsn, index, str(merchant_id), values)


def fx(kind, lsn, index, quote="USD", rate="1.0812345678"):
    key = ("EUR", quote, "2024-05-01")
    return row("fx_rate", kind, lsn, index, key, None if kind == "delete" else (*key, rate))


def truncate(table, lsn, index):
    return row(table, "truncate", lsn, index)


def apply_both(sink, rows):
    """Rows to ROWS through apply_rows, their typed changes to TYPED through apply; same offset back."""
    applied = sink.apply_rows(ROWS, rows)
    typed = [replace(captured.typed(), source=TYPED) for captured in rows]
    assert sink.apply(TYPED, typed) == applied
    return applied


# --- reading the staging layer ------------------------------------------------------------------------


def fetch(conn, query, params=None):
    with conn.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def table_rows(reader, spec, history=False, loaded_at=False):
    table = f"{spec.source}_{spec.table}" + ("_history" if history else "")
    columns = [*spec.columns, "_commit_lsn", "_index_in_txn", "_commit_time", "_is_deleted"]
    if history:
        columns.append("_op")
    if loaded_at:
        columns.append("_loaded_at")
    order = [*spec.key, "_commit_lsn", "_index_in_txn"]
    query = sql.SQL("SELECT {columns} FROM {table} ORDER BY {order}").format(
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        table=sql.Identifier("staging", table),
        order=sql.SQL(", ").join(map(sql.Identifier, order)),
    )
    return fetch(reader, query)


def staged(reader, source, loaded_at=False):
    """Every staging row of ``source`` (without ``_loaded_at`` unless asked) and its offset."""
    state = {}
    for spec in specs(source):
        state[spec.table] = table_rows(reader, spec, loaded_at=loaded_at)
        if spec.history:
            state[f"{spec.table}_history"] = table_rows(reader, spec, history=True, loaded_at=loaded_at)
    state["offset"] = fetch(
        reader, "SELECT commit_lsn, index_in_txn FROM staging.cdc_offsets WHERE source = %s", (source,)
    )
    return state


def assert_same_staging(reader):
    rows_state, typed_state = staged(reader, ROWS), staged(reader, TYPED)
    assert rows_state == typed_state
    assert any(rows_state[table] for table in rows_state if table != "offset")
    missing_loaded_at = fetch(
        reader,
        "SELECT count(*) FROM staging.rowsrc_charge WHERE _loaded_at IS NULL",
    )
    assert missing_loaded_at == [(0,)]
    return rows_state


def mirror(reader, table="charge"):
    """key -> row of ROWS' mirror (captured columns, then _commit_lsn, _index_in_txn, _is_deleted)."""
    spec = next(spec for spec in specs(ROWS) if spec.table == table)
    width = len(spec.columns)
    keyed = {}
    for found in table_rows(reader, spec):
        key = found[0] if len(spec.key) == 1 else found[: len(spec.key)]
        keyed[key] = (*found[:width], found[width], found[width + 1], found[width + 3])
    return keyed


def at(hours, minutes=0):
    return datetime(2024, 5, 1, hours, minutes, tzinfo=UTC)


# --- batches ------------------------------------------------------------------------------------------

BATCH_1 = [
    charge("insert", 100, 0, 1, memo=TRICKY),
    charge("insert", 100, 1, 2, customer=None, memo=LONG, amount="2.5"),
    charge("insert", 100, 2, 3, customer=None, captured=None, amount=None, created=None, memo=None),
    charge("insert", 100, 3, 4, memo="\\N"),
    merchant("insert", 100, 4, name="m\tone", profile="p1"),
    fx("insert", 100, 5),
    fx("insert", 100, 6, quote="GBP", rate="0.85"),
    charge("update", 101, 0, 1, captured="f", amount="11.50", memo=TRICKY),
]
BATCH_2 = [
    charge("update", 200, 0, 2, amount="20.00", memo=UNCHANGED_TOAST),  # memo from the stored row
    charge("delete", 200, 1, 3),  # key only: the rest from the stored row
    merchant("update", 200, 2, name="m2", profile=UNCHANGED_TOAST),  # profile from the stored row
    fx("update", 200, 3, rate="1.1"),
    truncate("charge", 210, 0),
    charge("insert", 210, 1, 5, memo="five"),
    charge("insert", 220, 0, 1, memo="again\\"),
    charge("update", 220, 1, 1, captured="t", memo=UNCHANGED_TOAST),  # memo from the insert above
    merchant("update", 230, 0, name="m3", profile="p3"),
    merchant("delete", 240, 0),
    merchant("insert", 250, 0, name="m4", profile="p4\\\n"),
    merchant("update", 255, 0, name="m4b", profile=UNCHANGED_TOAST),  # profile from the insert above
    fx("delete", 260, 0, quote="GBP"),
]
BATCH_4 = [
    *BATCH_2[-3:],  # already applied: skipped
    charge("update", 300, 0, 5, amount="5.55", memo=UNCHANGED_TOAST),  # memo from the stored row
    charge("delete", 300, 1, 99),  # a key never seen: a tombstone holding only the key
    charge("insert", 300, 2, 6, memo="six\t"),
    charge("delete", 300, 3, 6),  # after its insert in this batch: keeps that version's values
    merchant("update", 310, 0, name="m5", profile=UNCHANGED_TOAST),  # profile from the stored row
    fx("delete", 310, 1),
]


def test_rows_stage_exactly_what_typed_changes_stage(sink, reader):
    assert apply_both(sink, BATCH_1) == Position(101, 0)
    assert_same_staging(reader)
    rows = mirror(reader)
    assert rows[1] == (1, "tok_a", False, Decimal("11.50"), at(8), TRICKY, 101, 0, False)
    assert rows[2][1:6] == (None, True, Decimal("2.50"), at(8), LONG)
    assert rows[3] == (3, None, None, None, None, None, 100, 2, False)
    assert rows[4][5] == "\\N"

    assert apply_both(sink, BATCH_2) == Position(260, 0)
    state = assert_same_staging(reader)
    rows = mirror(reader)
    assert rows[1] == (1, "tok_a", True, Decimal("10.00"), at(8), "again\\", 220, 1, False)
    assert rows[2] == (2, "tok_a", True, Decimal("20.00"), at(8), LONG, 210, 0, True)  # truncated later
    assert rows[3][-3:] == (200, 1, True) and rows[3][5] is None  # deleted before the truncate: its position
    assert rows[4][-3:] == (210, 0, True) and rows[4][5] == "\\N"
    assert rows[5] == (5, "tok_a", True, Decimal("10.00"), at(8), "five", 210, 1, False)
    history = [(found[1], found[2], found[4], found[-1]) for found in state["merchant_history"]]
    assert history == [
        ("m\tone", "p1", 100, "I"),
        ("m2", "p1", 200, "U"),
        ("m3", "p3", 230, "U"),
        ("m3", "p3", 240, "D"),
        ("m4", "p4\\\n", 250, "I"),
        ("m4b", "p4\\\n", 255, "U"),
    ]
    day = date(2024, 5, 1)
    assert mirror(reader, "fx_rate") == {
        ("EUR", "GBP", day): ("EUR", "GBP", day, Decimal("0.8500000000"), 260, 0, True),
        ("EUR", "USD", day): ("EUR", "USD", day, Decimal("1.1000000000"), 200, 3, False),
    }

    before = staged(reader, ROWS, loaded_at=True), staged(reader, TYPED, loaded_at=True)
    assert apply_both(sink, BATCH_2) == Position(260, 0)  # a replay changes nothing, not even _loaded_at
    assert (staged(reader, ROWS, loaded_at=True), staged(reader, TYPED, loaded_at=True)) == before

    assert apply_both(sink, BATCH_4) == Position(310, 1)
    state = assert_same_staging(reader)
    rows = mirror(reader)
    assert rows[5] == (5, "tok_a", True, Decimal("5.55"), at(8), "five", 300, 0, False)
    assert rows[6] == (6, "tok_a", True, Decimal("10.00"), at(8), "six\t", 300, 3, True)
    assert rows[99] == (99, None, None, None, None, None, 300, 1, True)
    assert [(found[1], found[2], found[4]) for found in state["merchant_history"]][-2:] == [
        ("m4b", "p4\\\n", 255), ("m5", "p4\\\n", 310),
    ]
    assert state["offset"] == [(310, 1)]
    assert sink.applied_position(ROWS) == sink.applied_position(TYPED) == Position(310, 1)


def test_a_batch_entirely_at_or_below_the_offset_changes_nothing(sink, reader):
    apply_both(sink, BATCH_1)
    before = staged(reader, ROWS, loaded_at=True)
    assert sink.apply_rows(ROWS, BATCH_1[:3]) == Position(101, 0)
    assert sink.apply_rows(ROWS, []) == Position(101, 0)
    assert staged(reader, ROWS, loaded_at=True) == before


def test_key_change_deletes_the_old_key_and_updates_the_new_one_at_one_position(sink, reader):
    sink.apply_rows(ROWS, [charge("insert", 100, 0, 1, memo="one"), merchant("insert", 100, 1, name="a")])
    moved = [
        charge("delete", 200, 0, 1),
        charge("update", 200, 0, 2, memo="two"),
        merchant("delete", 200, 1, 1),
        merchant("update", 200, 1, 2, name="b"),
    ]
    assert sink.apply_rows(ROWS, moved) == Position(200, 1)
    rows = mirror(reader)
    assert rows[1][-3:] == (200, 0, True) and rows[1][5] == "one"
    assert rows[2][-3:] == (200, 0, False) and rows[2][5] == "two"
    spec = next(spec for spec in specs(ROWS) if spec.history)
    history = [(found[0], found[1], found[4], found[5], found[-1])
               for found in table_rows(reader, spec, history=True)]
    assert history == [(1, "a", 100, 1, "I"), (1, "a", 200, 1, "D"), (2, "b", 200, 1, "U")]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param([charge("insert", 200, 1, 7), charge("insert", 200, 0, 8)], id="out-of-order"),
        pytest.param([charge("insert", 200, 0, 7), charge("insert", 200, 0, 8)], id="repeated-position"),
        pytest.param(
            [charge("insert", 200, 0, 7), replace(charge("insert", 200, 1, 8), layout=LAYOUTS["merchant"])],
            id="layout-of-another-table",
        ),
        pytest.param([charge("insert", 200, 0, 7), replace(charge("insert", 200, 1, 8), source=TYPED)],
                     id="other-source"),
    ],
)
def test_bad_rows_apply_nothing(sink, reader, bad):
    sink.apply_rows(ROWS, BATCH_1)
    before = staged(reader, ROWS, loaded_at=True)
    # valid rows first: with chunks of 2 they would be loaded before the bad ones were reached
    earlier = [charge("insert", 150, index, 10 + index) for index in range(4)]
    with pytest.raises(WarehouseSinkError):
        sink.apply_rows(ROWS, [*earlier, *bad])
    assert staged(reader, ROWS, loaded_at=True) == before
    assert sink.applied_position(ROWS) == Position(101, 0)
    # the sink is still usable
    assert sink.apply_rows(ROWS, earlier) == Position(150, 3)


def test_delete_after_an_unchanged_toast_update_in_one_batch(sink, reader):
    apply_both(sink, [charge("insert", 100, 0, 1, memo=LONG), merchant("insert", 100, 1, profile=LONG)])
    apply_both(sink, [
        charge("update", 200, 0, 1, amount="3.00", memo=UNCHANGED_TOAST),
        charge("delete", 200, 1, 1),
        merchant("update", 200, 2, name="n", profile=UNCHANGED_TOAST),
        merchant("delete", 200, 3),
    ])
    assert_same_staging(reader)
    assert mirror(reader)[1][3:] == (Decimal("3.00"), at(8), LONG, 200, 1, True)
