"""Decode what a real PostgreSQL pgoutput slot emits for a known workload, and check it exactly."""

from __future__ import annotations

import random
import string
import uuid
from datetime import date
from decimal import Decimal

import pytest
from psycopg2 import sql

from paydata.cdc.pgoutput import (
    UNCHANGED_TOAST,
    LogicalMessage,
    Transaction,
    decode_message,
    parse_lsn,
)
from tests.oracles.parsed_changes import ParsedDecoder

pytestmark = pytest.mark.integration

SCHEMA = "cdc_live"
# Random letters defeat pglz, so the value stays > 2 kB and is stored out of line (TOASTed).
BIG_MEMO = "".join(random.Random(20240229).choices(string.ascii_letters + string.digits, k=8000))
REF = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")

CREATE_TABLES = """
CREATE SCHEMA {schema};
CREATE TABLE {schema}.account (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE {schema}.payment (
    id bigint PRIMARY KEY,
    account_id int REFERENCES {schema}.account (id),
    status char(1) NOT NULL,
    amount numeric(12, 2),
    memo text,
    meta jsonb,
    tags text[],
    ref uuid,
    paid_on date,
    captured boolean,
    raw bytea
);
CREATE PUBLICATION {publication} FOR TABLE {schema}.account, {schema}.payment;
"""
INSERT_ACCOUNT = "INSERT INTO {schema}.account (name) VALUES (%s) RETURNING id"
INSERT_PAYMENT = """
INSERT INTO {schema}.payment (id, account_id, status, amount, memo, meta, tags, ref, paid_on, captured, raw)
VALUES (%(id)s, %(account_id)s, %(status)s, %(amount)s, %(memo)s, %(meta)s, %(tags)s, %(ref)s,
        %(paid_on)s, %(captured)s, %(raw)s)
"""
CURRENT_XID = "SELECT txid_current() % 4294967296, clock_timestamp()"
CLOCK = "SELECT clock_timestamp()"
UPDATE_STATUS = "UPDATE {schema}.payment SET status = %s WHERE id = %s"
UPDATE_ID = "UPDATE {schema}.payment SET id = %s WHERE id = %s"
DELETE_PAYMENT = "DELETE FROM {schema}.payment WHERE id = %s"
HEARTBEAT = "SELECT pg_logical_emit_message(false, %s, %s)"
TRUNCATE_BOTH = "TRUNCATE {schema}.account, {schema}.payment RESTART IDENTITY CASCADE"
ADD_NOTE_COLUMN = "ALTER TABLE {schema}.payment ADD COLUMN note text"
INSERT_WITH_NOTE = "INSERT INTO {schema}.payment (id, status, note) VALUES (%s, %s, %s)"
CREATE_SLOT = "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')"
DROP_SLOT = "SELECT pg_drop_replication_slot(%s)"
PEEK_CHANGES = """
SELECT lsn::text, data
FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL,
     'proto_version', '1', 'publication_names', %s, 'messages', 'true')
"""


def _q(template: str, **identifiers: str) -> sql.Composed:
    return sql.SQL(template).format(**{k: sql.Identifier(v) for k, v in identifiers.items()})


@pytest.fixture
def slot_database(stack, fresh_database, admin_connect):
    """A fresh database with the tables, a publication and a pgoutput slot; the slot is dropped first."""
    dbname = fresh_database(prefix="pgo")
    conn = admin_connect(dbname)
    conn.autocommit = True
    suffix = uuid.uuid4().hex[:12]
    publication, slot = f"pub_{suffix}", f"pgo_{suffix}"
    with conn.cursor() as cur:
        cur.execute(_q(CREATE_TABLES, schema=SCHEMA, publication=publication))
        cur.execute(CREATE_SLOT, (slot,))
    try:
        yield conn, slot, publication
    finally:
        # A database that still has a slot cannot be dropped.
        with conn.cursor() as cur:
            cur.execute(DROP_SLOT, (slot,))
        conn.close()


def test_decoded_stream_matches_the_workload(slot_database):
    conn, slot, publication = slot_database
    q = {"schema": SCHEMA}
    with conn.cursor() as cur:
        cur.execute(CLOCK)
        (started,) = cur.fetchone()

        conn.autocommit = False
        cur.execute(CURRENT_XID)
        first_xid, _ = cur.fetchone()
        cur.execute(_q(INSERT_ACCOUNT, **q), ("acme",))
        (account_id,) = cur.fetchone()
        cur.execute(
            _q(INSERT_PAYMENT, **q),
            {
                "id": 1, "account_id": account_id, "status": "A", "amount": Decimal("1234.50"),
                "memo": BIG_MEMO, "meta": '{"mcc": "5411", "risk": 0.25}', "tags": ["card", "x y", None],
                "ref": str(REF), "paid_on": date(2024, 2, 29), "captured": True, "raw": b"\x00\xffpay",
            },
        )
        cur.execute(
            _q(INSERT_PAYMENT, **q),
            {
                "id": 2, "account_id": None, "status": "P", "amount": None, "memo": None, "meta": None,
                "tags": None, "ref": None, "paid_on": None, "captured": None, "raw": None,
            },
        )
        conn.commit()
        conn.autocommit = True

        cur.execute(_q(UPDATE_STATUS, **q), ("S", 1))
        cur.execute(_q(UPDATE_ID, **q), (3, 2))
        cur.execute(HEARTBEAT, ("paydata.heartbeat", "beat"))
        cur.execute(_q(DELETE_PAYMENT, **q), (3,))
        cur.execute(_q(TRUNCATE_BOTH, **q))
        cur.execute(_q(ADD_NOTE_COLUMN, **q))
        cur.execute(_q(INSERT_WITH_NOTE, **q), (10, "N", "after alter"))
        cur.execute(CLOCK)
        (finished,) = cur.fetchone()

        cur.execute(PEEK_CHANGES, (slot, publication))
        rows = [(parse_lsn(lsn), bytes(data)) for lsn, data in cur.fetchall()]

    decoder = ParsedDecoder()
    completed = decoder.feed_all(rows)
    assert not decoder.in_transaction
    transactions = [item for item in completed if isinstance(item, Transaction)]
    heartbeats = [item for item in completed if isinstance(item, LogicalMessage)]

    # The heartbeat arrives between the key-changing update and the delete, outside any transaction.
    assert [type(item).__name__ for item in completed] == ["Transaction"] * 3 + ["LogicalMessage"] + [
        "Transaction"
    ] * 3
    assert [(h.prefix, h.content, h.transactional) for h in heartbeats] == [("paydata.heartbeat", b"beat", False)]

    # Commit order, LSN bookkeeping and commit times.
    commit_lsns = [t.commit_lsn for t in transactions]
    assert commit_lsns == sorted(commit_lsns) and len(set(commit_lsns)) == len(commit_lsns)
    commit_row_lsns = [lsn for lsn, data in rows if data[:1] == b"C"]
    assert [t.end_lsn for t in transactions] == commit_row_lsns
    assert all(t.commit_lsn < t.end_lsn for t in transactions)
    assert all(started <= t.commit_time <= finished for t in transactions)
    assert transactions[0].xid == first_xid
    for txn in transactions:
        assert [c.index_in_txn for c in txn.changes] == list(range(len(txn.changes)))
        assert {(c.commit_lsn, c.xid, c.commit_time) for c in txn.changes} == {
            (txn.commit_lsn, txn.xid, txn.commit_time)
        }

    summary = [[(c.kind, c.table, c.key) for c in t.changes] for t in transactions]
    assert summary == [
        [("insert", "account", {"id": 1}), ("insert", "payment", {"id": 1}), ("insert", "payment", {"id": 2})],
        [("update", "payment", {"id": 1})],
        [("update", "payment", {"id": 2})],
        [("delete", "payment", {"id": 3})],
        [("truncate", "account", {}), ("truncate", "payment", {})],
        [("insert", "payment", {"id": 10})],
    ]
    insert_txn, status_txn, id_txn, delete_txn, truncate_txn, alter_txn = transactions

    account, first, second = insert_txn.changes
    assert account.new == {"id": 1, "name": "acme"} and account.schema == SCHEMA
    full_row = {
        "id": 1, "account_id": 1, "status": "A", "amount": Decimal("1234.50"), "memo": BIG_MEMO,
        "meta": {"mcc": "5411", "risk": 0.25}, "tags": ["card", "x y", None], "ref": REF,
        "paid_on": date(2024, 2, 29), "captured": True, "raw": b"\x00\xffpay",
    }
    assert first.new == full_row and first.old is None
    assert second.new == {"id": 2, "account_id": None, "status": "P"} | dict.fromkeys(
        ["amount", "memo", "meta", "tags", "ref", "paid_on", "captured", "raw"]
    )

    # Updating only the status leaves the TOASTed memo unsent: sinks must keep the stored value.
    [status_update] = status_txn.changes
    assert status_update.new == full_row | {"status": "S", "memo": UNCHANGED_TOAST}
    assert status_update.new["memo"] is UNCHANGED_TOAST
    assert status_update.old is None

    [id_update] = id_txn.changes
    assert id_update.old == {"id": 2}
    assert id_update.new["id"] == 3 and id_update.new["status"] == "P"

    [removal] = delete_txn.changes
    assert removal.old == {"id": 3} and removal.new is None

    assert all(c.truncate_cascade and c.truncate_restart_identity for c in truncate_txn.changes)

    [after_alter] = alter_txn.changes
    assert after_alter.new["note"] == "after alter" and after_alter.new["id"] == 10
    assert [c.name for c in decoder.relation(decode_relation_id(rows, "payment")).columns][-1] == "note"


def decode_relation_id(rows: list[tuple[int, bytes]], table: str) -> int:
    """The relation OID the stream used for ``table`` (from its last Relation message)."""
    ids = [m.relation_id for m in (decode_message(d) for _, d in rows if d[:1] == b"R") if m.name == table]
    assert ids, f"no Relation message for {table}"
    return ids[-1]
