"""The CDC engine against real Postgres: snapshot, streaming, TOAST, schema changes, lost slots.

Each test gets a fresh source database, a fresh warehouse database, its own slot and publication
(dropped before the databases) and writes through the real WarehouseSink.
"""

from __future__ import annotations

import random
import string
import threading
import uuid

import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extras import LogicalReplicationConnection

from paydata import settings
from paydata.cdc.capture import SlotBusyError
from paydata.cdc.deadletters import PostgresDeadLetterStore
from paydata.cdc.engine import CdcEngine, EngineLimits
from paydata.cdc.health import SlotLostError
from paydata.cdc.ledger import PostgresConfirmLedger
from paydata.cdc.manifest import ManifestError, load_manifest
from paydata.cdc.model import Position, staging_table
from paydata.cdc.pgoutput import parse_lsn
from paydata.cdc.sinks.warehouse import WarehouseSink

pytestmark = pytest.mark.integration

SOURCE = "tsrc"
SCHEMA = """
CREATE TABLE account (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    email_enc bytea,
    balance numeric(12, 2) NOT NULL,
    note text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE entry (id bigint PRIMARY KEY, account_id bigint NOT NULL, amount bigint NOT NULL);
GRANT USAGE ON SCHEMA public TO paydata_cdc;
GRANT SELECT ON account, entry TO paydata_cdc;
"""
BIG_NOTE = "".join(random.Random(7).choices(string.ascii_letters + string.digits, k=9000))


def manifest_dict(slot: str, tables: tuple[str, ...] = ("account", "entry")) -> dict:
    all_tables = {
        "account": {
            "key": ["id"],
            "sinks": ["warehouse"],
            "columns": {
                "id": "keep",
                "customer_id": "tokenise:customer",
                "email_enc": "drop",
                "balance": "keep",
                "note": "keep",
                "updated_at": "keep",
            },
        },
        "entry": {
            "key": ["id"],
            "sinks": ["warehouse"],
            "history": True,
            "columns": {"id": "keep", "account_id": "keep", "amount": "keep"},
        },
    }
    return {"source": SOURCE, "slot": slot, "publication": slot, "tables": {t: all_tables[t] for t in tables}}


class Env:
    def __init__(self, source_db: str, warehouse_db: str, slot: str, admin_connect):
        self.source_db = source_db
        self.warehouse_db = warehouse_db
        self.slot = slot
        self.admin_connect = admin_connect
        self.src = admin_connect(source_db)
        self.src.autocommit = True
        self.sinks: list[WarehouseSink] = []

    def cdc_kwargs(self) -> dict:
        return settings.connection("paydata_cdc_oltp").psycopg2_kwargs(dbname=self.source_db)

    def warehouse_connect(self):
        return psycopg2.connect(**settings.connection(settings.WAREHOUSE_CONN_ID).psycopg2_kwargs(dbname=self.warehouse_db))

    def engine(self, manifest=None, sinks=None, limits=None, *, stream_params=None) -> CdcEngine:
        """The engine on this test's databases (``stream_params`` overrides the streaming session's
        connection keywords)."""
        manifest = load_manifest(manifest or manifest_dict(self.slot))
        if sinks is None:
            sink = WarehouseSink(self.warehouse_connect)
            self.sinks.append(sink)
            sinks = [sink]
        return CdcEngine(
            manifest,
            sinks,
            connect=lambda: psycopg2.connect(**self.cdc_kwargs()),
            replication_connect=lambda: psycopg2.connect(
                connection_factory=LogicalReplicationConnection, **self.cdc_kwargs()
            ),
            owner_connect=lambda: self.admin_connect(self.source_db),
            limits=limits or EngineLimits(snapshot_chunk_rows=3, batch_changes=50),
            stream_params=stream_params or self.cdc_kwargs,
            ledger=PostgresConfirmLedger(self.warehouse_connect),
            dead_letters=PostgresDeadLetterStore(self.warehouse_connect),
        )

    def execute(self, statement: str, params=None) -> None:
        with self.src.cursor() as cursor:
            cursor.execute(statement, params)

    def confirmed_flush(self) -> int:
        with self.src.cursor() as cursor:
            cursor.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (self.slot,))
            return parse_lsn(cursor.fetchone()[0])

    def expected(self, manifest, table: str) -> dict:
        spec = manifest.tables[table]
        columns = spec.captured_columns
        with self.src.cursor() as cursor:
            cursor.execute(sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)))
            rows = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
        out = {}
        for row in rows:
            captured = manifest.capture_row(table, row, kind="snapshot", position=Position.zero(), commit_time=None)
            out[tuple(captured.key.values())] = captured.row
        return out

    def staged(self, manifest, table: str, deleted: bool = False) -> dict:
        spec = manifest.tables[table]
        columns = spec.captured_columns
        conn = self.warehouse_connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql.SQL("SELECT {} FROM {} WHERE _is_deleted = %s").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)),
                    sql.Identifier("staging", staging_table(SOURCE, table))), (deleted,))
                rows = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
        finally:
            conn.close()
        return {tuple(row[k] for k in spec.key): row for row in rows}

    def assert_mirrors(self, tables=("account", "entry")) -> None:
        manifest = load_manifest(manifest_dict(self.slot))
        for table in tables:
            assert self.staged(manifest, table) == self.expected(manifest, table), table


@pytest.fixture
def env(stack, fresh_database, admin_connect):
    source_db = fresh_database(prefix="cdcsrc")
    warehouse_db = fresh_database(prefix="cdcwh", owner="warehouse_owner")
    slot = f"t_cdc_{uuid.uuid4().hex[:12]}"
    environment = Env(source_db, warehouse_db, slot, admin_connect)
    environment.execute(SCHEMA)
    yield environment
    for sink in environment.sinks:
        sink.close()
    with environment.src.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
            "WHERE slot_name LIKE %s AND active_pid IS NOT NULL", (slot + "%",))
        cursor.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name LIKE %s AND NOT temporary", (slot + "%",))
    environment.src.close()


def seed(env: Env, ids=range(1, 8)) -> None:
    for i in ids:
        env.execute("INSERT INTO account (id, customer_id, email_enc, balance, note) VALUES (%s, %s, %s, %s, %s)",
                    (i, 1000 + i, b"x" * 40, i * 10, f"note {i}"))
        env.execute("INSERT INTO entry (id, account_id, amount) VALUES (%s, %s, %s)", (i, i, i * 5))


def test_snapshot_then_insert_update_delete_truncate(env):
    seed(env)
    engine = env.engine()
    report = env.engine().run()
    assert report["snapshot"]["rows"] == {"account": 7, "entry": 7}
    env.assert_mirrors()
    start = env.confirmed_flush()

    env.execute("INSERT INTO account (id, customer_id, balance) VALUES (100, 5, 1.50)")
    env.execute("UPDATE account SET balance = balance + 1, note = NULL WHERE id IN (1, 2)")
    env.execute("DELETE FROM account WHERE id = 3")
    env.execute("DELETE FROM entry WHERE id = 4")
    report = engine.run()
    assert report["snapshot"] is None and report["caught_up"]
    assert report["applied"]["warehouse"] >= 5
    env.assert_mirrors()
    manifest = load_manifest(manifest_dict(env.slot))
    assert set(env.staged(manifest, "account", deleted=True)) == {(3,)}
    assert env.confirmed_flush() > start

    env.execute("TRUNCATE entry")
    engine.run()
    assert env.staged(manifest, "entry") == {}
    assert len(env.staged(manifest, "entry", deleted=True)) == 7
    env.assert_mirrors()
    # Tokenised and dropped columns: the token is not the id, the ciphertext never arrives.
    staged = env.staged(manifest, "account")[(1,)]
    assert staged["customer_id"].startswith("tok_") and "email_enc" not in staged


def test_long_transaction_committing_after_a_later_one_is_captured(env):
    engine = env.engine()
    engine.run()
    long_conn = env.admin_connect(env.source_db)
    with long_conn.cursor() as cursor:
        cursor.execute("INSERT INTO account (id, customer_id, balance) VALUES (200, 1, 1)")
    env.execute("INSERT INTO account (id, customer_id, balance) VALUES (201, 2, 2)")
    engine.run()
    manifest = load_manifest(manifest_dict(env.slot))
    assert set(env.staged(manifest, "account")) == {(201,)}
    long_conn.commit()
    engine.run()
    assert set(env.staged(manifest, "account")) == {(200,), (201,)}
    env.assert_mirrors()


def test_updating_a_small_column_keeps_the_large_toasted_value(env):
    engine = env.engine()
    env.execute("INSERT INTO account (id, customer_id, balance, note) VALUES (1, 1, 1, %s)", (BIG_NOTE,))
    engine.run()
    env.execute("INSERT INTO account (id, customer_id, balance, note) VALUES (2, 2, 2, %s)", (BIG_NOTE,))
    env.execute("UPDATE account SET balance = 99 WHERE id IN (1, 2)")
    engine.run()
    manifest = load_manifest(manifest_dict(env.slot))
    staged = env.staged(manifest, "account")
    assert staged[(1,)]["note"] == BIG_NOTE and staged[(2,)]["note"] == BIG_NOTE
    env.assert_mirrors()


def test_add_column_keeps_running_and_drop_column_fails_without_advancing(env):
    engine = env.engine()
    seed(env, range(1, 3))
    engine.run()
    env.execute("ALTER TABLE account ADD COLUMN secret text")
    env.execute("INSERT INTO account (id, customer_id, balance, secret) VALUES (50, 1, 1, 'pii')")
    report = engine.run()
    assert any("account.secret" in warning for warning in report["warnings"])
    env.assert_mirrors()

    env.execute("ALTER TABLE account DROP COLUMN note")
    env.execute("INSERT INTO account (id, customer_id, balance) VALUES (51, 1, 1)")
    before = env.confirmed_flush()
    with pytest.raises(ManifestError, match=r"account\.note"):
        engine.run()
    assert env.confirmed_flush() == before
    manifest = load_manifest(manifest_dict(env.slot))
    assert (51,) not in env.staged(manifest, "account")


def test_writes_during_the_snapshot_are_neither_lost_nor_duplicated(env):
    seed(env, range(1, 20))

    class WritingSink(WarehouseSink):
        writes_done = False

        def apply(self, source, changes):
            position = super().apply(source, changes)
            if not self.writes_done and any(c.kind == "snapshot" for c in changes):
                self.writes_done = True
                env.execute("INSERT INTO account (id, customer_id, balance) VALUES (300, 3, 3)")
                env.execute("UPDATE account SET balance = 777 WHERE id BETWEEN 1 AND 10")
                env.execute("DELETE FROM account WHERE id IN (15, 16)")
                env.execute("INSERT INTO entry (id, account_id, amount) VALUES (300, 300, 1)")
                env.execute("DELETE FROM entry WHERE id = 18")
            return position

    sink = WritingSink(env.warehouse_connect)
    env.sinks.append(sink)
    report = env.engine(sinks=[sink]).run()
    assert sink.writes_done and report["snapshot"]["rows"] == {"account": 19, "entry": 19}
    env.assert_mirrors()
    with env.warehouse_connect() as conn, conn.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT count(*), count(DISTINCT (id, _commit_lsn, _index_in_txn)) FROM {}").format(
            sql.Identifier("staging", f"{SOURCE}_entry_history")))
        total, distinct = cursor.fetchone()
    assert total == distinct


def test_table_added_to_the_manifest_later_is_snapshotted_and_streamed(env):
    seed(env, range(1, 6))
    env.engine(manifest_dict(env.slot, ("account",))).run()
    env.execute("INSERT INTO entry (id, account_id, amount) VALUES (10, 1, 1)")
    env.execute("UPDATE account SET balance = 5 WHERE id = 1")
    engine = env.engine()
    report = engine.run()
    assert report["snapshot"]["tables"] == ["entry"]
    env.assert_mirrors()
    env.execute("DELETE FROM entry WHERE id = 10")
    env.execute("INSERT INTO entry (id, account_id, amount) VALUES (11, 1, 1)")
    engine.run()
    env.assert_mirrors()


def test_lost_slot_fails_loudly_and_resnapshot_recovers(env):
    seed(env, range(1, 6))
    engine = env.engine()
    engine.run()
    env.execute("SELECT pg_drop_replication_slot(%s)", (env.slot,))
    env.execute("DELETE FROM account WHERE id = 2")
    env.execute("INSERT INTO account (id, customer_id, balance) VALUES (400, 4, 4)")
    with pytest.raises(SlotLostError, match=rf"python -m paydata.cdc resnapshot --source {SOURCE}"):
        engine.run()
    report = engine.resnapshot()
    assert report["snapshot"]["rows"]["account"] == 5
    env.assert_mirrors()
    manifest = load_manifest(manifest_dict(env.slot))
    assert set(env.staged(manifest, "account", deleted=True)) == {(2,)}


def test_interrupted_snapshot_is_redone(env):
    seed(env, range(1, 10))

    class FailingSink(WarehouseSink):
        def apply(self, source, changes):
            if any(c.kind == "snapshot" for c in changes):
                raise RuntimeError("killed mid-snapshot")
            return super().apply(source, changes)

    failing = FailingSink(env.warehouse_connect)
    env.sinks.append(failing)
    with pytest.raises(RuntimeError, match="mid-snapshot"):
        env.engine(sinks=[failing]).run()
    env.execute("DELETE FROM account WHERE id = 1")
    report = env.engine().run()
    assert report["snapshot"]["rows"]["account"] == 8
    env.assert_mirrors()


def test_concurrent_runs_wait_for_the_slot(env):
    engine = env.engine()
    engine.run()
    holder = psycopg2.connect(connection_factory=LogicalReplicationConnection, **env.cdc_kwargs())
    cursor = holder.cursor()
    cursor.start_replication(slot_name=env.slot, decode=False,
                             options={"proto_version": "1", "publication_names": env.slot})
    releaser = threading.Timer(1.0, holder.close)
    releaser.start()
    env.execute("INSERT INTO account (id, customer_id, balance) VALUES (1, 1, 1)")
    engine.run()
    releaser.join()
    env.assert_mirrors()


def slot_active_pid(env: Env) -> int | None:
    with env.src.cursor() as cursor:
        cursor.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (env.slot,))
        return cursor.fetchone()[0]


def test_a_backlog_is_streamed_in_many_batches_over_one_replication_session(env):
    engine = env.engine()
    engine.run()
    for first in range(0, 400, 10):  # 40 transactions of 10 inserts (+ 2 updates each)
        env.execute("INSERT INTO account (id, customer_id, balance) SELECT g, g, g FROM generate_series(%s, %s) g",
                    (first + 1, first + 10))
        env.execute("UPDATE account SET balance = balance + 1 WHERE id IN (%s, %s)", (first + 1, first + 2))

    class SessionRecordingSink(WarehouseSink):
        def __init__(self, connect):
            super().__init__(connect)
            self.slot_holders: list[int | None] = []

        def apply_rows(self, source, rows):
            self.slot_holders.append(slot_active_pid(env))
            return super().apply_rows(source, rows)

    sink = SessionRecordingSink(env.warehouse_connect)
    env.sinks.append(sink)
    report = env.engine(sinks=[sink], limits=EngineLimits(batch_changes=50)).run()
    assert report["caught_up"] and report["transactions"] >= 80 and report["batches"] >= 10
    # One decoding session for the whole backlog: the same walsender held the slot for every batch.
    assert len(sink.slot_holders) >= 10 and len(set(sink.slot_holders)) == 1 and sink.slot_holders[0] is not None
    assert slot_active_pid(env) is None  # released before run() returned
    env.assert_mirrors()
    assert env.confirmed_flush() >= sink.applied_position(SOURCE).commit_lsn


def test_a_run_gives_up_with_slot_busy_while_another_consumer_streams_the_slot(env):
    engine = env.engine(limits=EngineLimits(slot_busy_wait_seconds=1.0))
    engine.run()
    holder = psycopg2.connect(connection_factory=LogicalReplicationConnection, **env.cdc_kwargs())
    try:
        holder.cursor().start_replication(slot_name=env.slot, decode=False,
                                          options={"proto_version": "1", "publication_names": env.slot})
        before = env.confirmed_flush()
        env.execute("INSERT INTO account (id, customer_id, balance) VALUES (1, 1, 1)")
        with pytest.raises(SlotBusyError, match="another consumer is running"):
            engine.run()
        assert env.confirmed_flush() == before
    finally:
        holder.close()
    engine.run()
    env.assert_mirrors()
