"""Exactly-once where it used to break: crashes at every step, key changes with large values, a
replaced slot, slow sinks, concurrent preparation, and the lag a run reports.

The source is a ``merchant`` table captured into both real sinks (warehouse staging with history and
the Mongo ``merchant_profiles`` documents), in fresh databases per test. Crash tests run the engine
in a subprocess (this file is its entry point) with ``PAYDATA_FAILPOINT`` naming the step to die at,
then compare the source with both sinks row for row after a rerun.
"""

from __future__ import annotations

import os
import random
import string
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extras import LogicalReplicationConnection

SOURCE = "reference"  # the Mongo sink's document model knows reference.merchant
SCHEMA = """
CREATE TABLE merchant (
    merchant_id bigint PRIMARY KEY,
    legal_name text NOT NULL,
    mcc text NOT NULL,
    country_code text NOT NULL,
    status text NOT NULL,
    contact_enc bytea
);
ALTER TABLE merchant ALTER COLUMN legal_name SET STORAGE EXTERNAL;  -- large names leave the row (TOAST)
GRANT USAGE ON SCHEMA public TO paydata_cdc;
GRANT SELECT ON merchant TO paydata_cdc;
"""
COLUMNS = ("merchant_id", "legal_name", "mcc", "country_code", "status")
BIG_NAME = "".join(random.Random(9).choices(string.ascii_letters, k=12_000))


def manifest_dict(slot: str) -> dict:
    return {
        "source": SOURCE,
        "slot": slot,
        "publication": slot,
        "tables": {
            "merchant": {
                "key": ["merchant_id"],
                "sinks": ["warehouse", "mongo"],
                "history": True,
                "columns": {**{column: "keep" for column in COLUMNS}, "contact_enc": "drop"},
                "mongo": {"collection": "merchant_profiles",
                          "fields": {column: column for column in COLUMNS if column != "merchant_id"}},
            }
        },
    }


class Databases:
    """Names of one test's source, warehouse and Mongo databases, and the slot."""

    def __init__(self, source_db: str, warehouse_db: str, mongo_db: str, slot: str):
        self.source_db, self.warehouse_db, self.mongo_db, self.slot = source_db, warehouse_db, mongo_db, slot

    def argv(self) -> list[str]:
        return [self.source_db, self.warehouse_db, self.mongo_db, self.slot]

    def cdc_kwargs(self, **extra) -> dict:
        from paydata import settings

        return {**settings.connection("paydata_cdc_reference").psycopg2_kwargs(dbname=self.source_db), **extra}

    def warehouse_connect(self):
        from paydata import settings

        return psycopg2.connect(**settings.connection(settings.WAREHOUSE_CONN_ID).psycopg2_kwargs(
            dbname=self.warehouse_db))

    def mongo(self):
        from paydata.stack import mongo_root_client  # only the root user may use a throwaway database

        return mongo_root_client(serverSelectionTimeoutMS=5000)[self.mongo_db]

    def engine(self, *, sinks=None, batch_changes: int = 40, stream_extra: dict | None = None, **limits):
        from paydata.cdc.deadletters import PostgresDeadLetterStore
        from paydata.cdc.engine import CdcEngine, EngineLimits
        from paydata.cdc.ledger import PostgresConfirmLedger
        from paydata.cdc.manifest import load_manifest
        from paydata.cdc.sinks.mongo import MongoSink
        from paydata.cdc.sinks.warehouse import WarehouseSink
        from paydata.stack import admin_connect

        if sinks is None:
            sinks = [WarehouseSink(self.warehouse_connect), MongoSink(self.mongo)]
        return CdcEngine(
            load_manifest(manifest_dict(self.slot)),
            sinks,
            connect=lambda: psycopg2.connect(**self.cdc_kwargs()),
            replication_connect=lambda: psycopg2.connect(
                connection_factory=LogicalReplicationConnection, **self.cdc_kwargs()),
            owner_connect=lambda: admin_connect(self.source_db),
            stream_params=lambda: self.cdc_kwargs(**(stream_extra or {})),
            ledger=PostgresConfirmLedger(self.warehouse_connect),
            dead_letters=PostgresDeadLetterStore(self.warehouse_connect),
            limits=EngineLimits(batch_changes=batch_changes, snapshot_chunk_rows=25, slot_busy_wait_seconds=30,
                                **limits),
        )


class Env(Databases):
    def __init__(self, databases: Databases, admin_connect):
        super().__init__(*databases.argv())
        self.src = admin_connect(self.source_db)
        self.src.autocommit = True

    def execute(self, statement: str, params=None) -> None:
        with self.src.cursor() as cursor:
            cursor.execute(statement, params)

    def query(self, statement: str, params=None) -> list[tuple]:
        with self.src.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall()

    def seed(self, count: int, first: int = 1) -> None:
        self.execute(
            "INSERT INTO merchant SELECT g, 'Merchant ' || g, '5411', 'GB', 'active', '\\x00'::bytea "
            "FROM generate_series(%s, %s) g", (first, first + count - 1))

    def write_traffic(self, rng: random.Random, transactions: int, next_id: int) -> int:
        """Inserts, updates, deletes and key changes in small transactions; returns the next free id."""
        for _ in range(transactions):
            with self.src.cursor() as cursor:
                cursor.execute("BEGIN")
                for _ in range(rng.randint(1, 6)):
                    live = [row[0] for row in self.query("SELECT merchant_id FROM merchant ORDER BY random() LIMIT 3")]
                    action = rng.random()
                    if action < 0.4 or not live:
                        cursor.execute("INSERT INTO merchant VALUES (%s, %s, '5812', 'FR', 'active', NULL)",
                                       (next_id, f"Shop {next_id}"))
                        next_id += 1
                    elif action < 0.75:
                        cursor.execute("UPDATE merchant SET status = %s, mcc = %s WHERE merchant_id = %s",
                                       (rng.choice(["active", "restricted"]), rng.choice(["5411", "5999"]), live[0]))
                    elif action < 0.9:
                        cursor.execute("DELETE FROM merchant WHERE merchant_id = %s", (live[0],))
                    else:
                        cursor.execute("UPDATE merchant SET merchant_id = %s WHERE merchant_id = %s",
                                       (next_id, live[0]))
                        next_id += 1
                cursor.execute("COMMIT")
        return next_id

    def source_rows(self) -> dict[int, tuple]:
        return {row[0]: row for row in self.query(f"SELECT {', '.join(COLUMNS)} FROM merchant")}

    def staged_rows(self) -> dict[int, tuple]:
        conn = self.warehouse_connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql.SQL("SELECT {} FROM staging.reference_merchant WHERE NOT _is_deleted").format(
                    sql.SQL(", ").join(map(sql.Identifier, COLUMNS))))
                return {row[0]: row for row in cursor.fetchall()}
        finally:
            conn.close()

    def mongo_rows(self) -> dict[int, tuple]:
        documents = self.mongo()["merchant_profiles"].find({"deleted": False})
        return {doc["_id"]: (doc["_id"], doc.get("legal_name"), doc.get("mcc"), doc.get("country_code"),
                             doc.get("status")) for doc in documents}

    def assert_sinks_equal_source(self) -> None:
        expected = self.source_rows()
        assert self.staged_rows() == expected
        assert self.mongo_rows() == expected

    def slot_confirmed(self) -> int:
        from paydata.cdc.pgoutput import parse_lsn

        return parse_lsn(self.query("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                                    (self.slot,))[0][0])

    def current_wal(self) -> int:
        from paydata.cdc.pgoutput import parse_lsn

        return parse_lsn(self.query("SELECT pg_current_wal_lsn()::text")[0][0])


@pytest.fixture
def env(stack, fresh_database, admin_connect, mongo_db):
    databases = Databases(fresh_database(prefix="eosrc"), fresh_database(prefix="eowh", owner="warehouse_owner"),
                          mongo_db.name, f"t_eo_{uuid.uuid4().hex[:12]}")
    environment = Env(databases, admin_connect)
    environment.execute(SCHEMA)
    yield environment
    environment.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                        "WHERE slot_name LIKE %s AND active_pid IS NOT NULL", (environment.slot + "%",))
    time.sleep(0.1)
    environment.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        "WHERE slot_name LIKE %s AND NOT temporary", (environment.slot + "%",))
    environment.src.close()


def run_until_killed(env: Env, failpoint: str, timeout: float = 120) -> None:
    """Run the engine in a subprocess that must die by SIGKILL at ``failpoint``."""
    plugins = str(Path(__file__).resolve().parents[2] / "plugins")
    child_env = {**os.environ, "PAYDATA_FAILPOINT": failpoint,
                 "PYTHONPATH": os.pathsep.join(filter(None, [plugins, os.environ.get("PYTHONPATH")]))}
    process = subprocess.run([sys.executable, __file__, *env.argv()], env=child_env, capture_output=True,
                             timeout=timeout, check=False)
    assert process.returncode == -9, (
        f"the engine was to die at {failpoint} but exited {process.returncode}: {process.stderr.decode()[-3000:]}")


# -- crashes at every step ---------------------------------------------------------------------------

STREAM_FAILPOINTS = [
    "cdc.batch_read@3",  # batches are read one ahead: the third read comes after the first confirm
    "cdc.sink_committed.warehouse@2",  # between the sinks: the warehouse has the batch, Mongo does not
    "cdc.sink_committed.mongo@2",
    "cdc.ledger_written@2",
    "cdc.confirmed@2",  # the slot moved; the next batch is not applied
    "warehouse.in_transaction@2",
    "mongo.in_transaction@2",
]


@pytest.mark.integration
@pytest.mark.parametrize("failpoint", STREAM_FAILPOINTS)
def test_a_crash_at_any_step_of_streaming_loses_and_duplicates_nothing(env, failpoint):
    rng = random.Random(failpoint)
    env.seed(60)
    env.engine().run()
    next_id = env.write_traffic(rng, 40, 10_000)
    before = env.slot_confirmed()
    run_until_killed(env, failpoint)
    # Killed at the second batch: the first one was applied and confirmed, so the crash lands after a confirm.
    assert env.slot_confirmed() > before
    env.write_traffic(rng, 10, next_id)
    report = env.engine().run()
    assert report["caught_up"], report
    env.assert_sinks_equal_source()
    # Every version went to history exactly once (a replay would have added nothing, a loss leaves a gap).
    conn = env.warehouse_connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT count(*), count(DISTINCT (merchant_id, _commit_lsn, _index_in_txn)) "
                           "FROM staging.reference_merchant_history")
            total, distinct = cursor.fetchone()
    finally:
        conn.close()
    assert total == distinct


@pytest.mark.integration
def test_a_crash_in_the_middle_of_the_snapshot_is_redone_from_scratch(env):
    env.seed(200)
    run_until_killed(env, "cdc.snapshot_chunk@3")
    env.execute("DELETE FROM merchant WHERE merchant_id <= 10")
    env.execute("UPDATE merchant SET status = 'closed' WHERE merchant_id BETWEEN 11 AND 20")
    report = env.engine().run()
    assert report["snapshot"] is not None and report["snapshot"]["rows"]["merchant"] == 190
    env.assert_sinks_equal_source()


# -- a key change that leaves a large value unchanged ------------------------------------------------


@pytest.mark.integration
def test_a_key_change_keeps_the_unchanged_large_value_in_both_sinks(env):
    env.execute("INSERT INTO merchant VALUES (1, %s, '5411', 'GB', 'active', NULL)", (BIG_NAME,))
    env.execute("INSERT INTO merchant VALUES (2, %s, '5411', 'GB', 'active', NULL)", (BIG_NAME + "b",))
    engine = env.engine()
    engine.run()
    # Stored before the batch: the new key's unchanged value comes from the old key's stored row.
    env.execute("UPDATE merchant SET merchant_id = 101 WHERE merchant_id = 1")
    # In the same batch as its insert, and moved twice within the batch.
    env.execute("INSERT INTO merchant VALUES (3, %s, '5999', 'DE', 'active', NULL)", (BIG_NAME + "c",))
    env.execute("UPDATE merchant SET merchant_id = 103 WHERE merchant_id = 3")
    env.execute("UPDATE merchant SET merchant_id = 202 WHERE merchant_id = 2")
    env.execute("UPDATE merchant SET merchant_id = 302, status = 'restricted' WHERE merchant_id = 202")
    report = engine.run()
    assert report["caught_up"]
    staged = env.staged_rows()
    assert staged[101][1] == BIG_NAME and staged[103][1] == BIG_NAME + "c" and staged[302][1] == BIG_NAME + "b"
    env.assert_sinks_equal_source()


# -- a slot recreated under the same name ------------------------------------------------------------


@pytest.mark.integration
def test_a_slot_recreated_under_the_same_name_fails_loudly_until_resnapshot(env):
    from paydata.cdc.health import SlotIdentityError, SlotLostError, check_slot
    from paydata.cdc.ledger import PostgresConfirmLedger
    from paydata.cdc.manifest import load_manifest

    env.seed(20)
    engine = env.engine()
    engine.run()
    env.execute("SELECT pg_drop_replication_slot(%s)", (env.slot,))
    env.execute("INSERT INTO merchant VALUES (500, 'Committed while no slot existed', '5411', 'GB', 'active', NULL)")
    env.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (env.slot,))
    with pytest.raises(SlotIdentityError, match="recreated or advanced by another consumer"):
        engine.run()
    assert 500 not in env.staged_rows()  # refused before anything was applied
    conn = psycopg2.connect(**env.cdc_kwargs())
    ledger = PostgresConfirmLedger(env.warehouse_connect)
    try:
        with pytest.raises(SlotLostError, match="resnapshot --source reference"):
            check_slot(conn, load_manifest(manifest_dict(env.slot)), ledger)
    finally:
        conn.close()
        ledger.close()
    report = engine.resnapshot()
    assert report["snapshot"]["rows"]["merchant"] == 21
    env.assert_sinks_equal_source()


@pytest.mark.integration
def test_a_slot_the_ledger_does_not_know_is_refused_unless_adopted(env):
    env.seed(5)
    engine = env.engine()
    engine.run()
    conn = env.warehouse_connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute("DELETE FROM staging.cdc_slot_ledger")  # a deployment older than the ledger
        conn.commit()
    finally:
        conn.close()
    from paydata.cdc.health import SlotIdentityError

    with pytest.raises(SlotIdentityError, match="adopt-slot"):
        engine.run()
    adopted = engine.adopt_slot()
    assert adopted["slot"] == env.slot
    env.execute("UPDATE merchant SET status = 'closed' WHERE merchant_id = 1")
    assert engine.run()["caught_up"]
    env.assert_sinks_equal_source()


# -- a sink slower than wal_sender_timeout ----------------------------------------------------------


@pytest.mark.integration
def test_a_batch_slower_than_wal_sender_timeout_keeps_its_session(env):
    from paydata.cdc.sinks.mongo import MongoSink
    from paydata.cdc.sinks.warehouse import WarehouseSink

    class SlowSink(WarehouseSink):
        def apply_rows(self, source, rows):
            time.sleep(2.5)
            return super().apply_rows(source, rows)

    env.seed(5)
    env.engine().run()
    env.execute("UPDATE merchant SET status = 'restricted'")
    env.execute("UPDATE merchant SET status = 'active'")
    slow = SlowSink(env.warehouse_connect)
    engine = env.engine(sinks=[slow, MongoSink(env.mongo)], batch_changes=5,
                        stream_extra={"options": "-c wal_sender_timeout=1s"}, keepalive_seconds=0.3)
    report = engine.run()
    assert report["caught_up"] and report["batches"] >= 2
    env.assert_sinks_equal_source()


# -- two runs preparing and applying at once ---------------------------------------------------------


@pytest.mark.integration
def test_preparing_while_another_run_applies_waits_instead_of_deadlocking(env):
    """An apply locks the source's offsets row, then staging tables; prepare() must take the same
    row first, or its CREATE INDEX IF NOT EXISTS and the apply's upserts lock tables crosswise."""
    from paydata.cdc.model import TableSpec
    from paydata.cdc.sinks.warehouse import WarehouseSink

    env.execute("CREATE TABLE note (id bigint PRIMARY KEY, body text); GRANT SELECT ON note TO paydata_cdc")
    types = {"merchant_id": "bigint", "legal_name": "text", "mcc": "text", "country_code": "text", "status": "text"}
    specs = [TableSpec(SOURCE, "merchant", ("merchant_id",), types, ("warehouse",), True),
             TableSpec(SOURCE, "note", ("id",), {"id": "bigint", "body": "text"}, ("warehouse",), False)]
    WarehouseSink(env.warehouse_connect).prepare(specs)
    applying = env.warehouse_connect()
    finished: list[str] = []
    errors: list[BaseException] = []
    try:
        with applying.cursor() as cursor:  # what an apply does first: the offsets row, then a table
            cursor.execute("SELECT * FROM staging.cdc_offsets WHERE source = %s FOR UPDATE", (SOURCE,))
            cursor.execute("INSERT INTO staging.reference_note (id, body, _commit_lsn, _index_in_txn, _is_deleted) "
                           "VALUES (1, 'x', 1, 0, false)")

        def prepare():
            try:
                WarehouseSink(env.warehouse_connect).prepare(specs)
                finished.append("prepare")
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        preparer = threading.Thread(target=prepare)
        preparer.start()
        time.sleep(1.0)
        assert not finished and not errors  # waiting for the apply, holding no table lock yet
        with applying.cursor() as cursor:
            cursor.execute("INSERT INTO staging.reference_merchant (merchant_id, legal_name, mcc, country_code, "
                           "status, _commit_lsn, _index_in_txn, _is_deleted) VALUES (1, 'a', '1', 'GB', 'x', 1, 1, false)")
        applying.commit()
        finished.append("apply")
        preparer.join(30)
    finally:
        applying.close()
    assert not errors, errors
    assert finished == ["apply", "prepare"]


# -- what a run reports -----------------------------------------------------------------------------


@pytest.mark.integration
def test_a_caught_up_run_confirms_the_servers_sent_position_and_reports_lag_in_seconds(env):
    from paydata.cdc.health import check_slot
    from paydata.cdc.ledger import PostgresConfirmLedger
    from paydata.cdc.manifest import load_manifest
    from paydata.cdc.pgoutput import parse_lsn

    env.seed(300)
    engine = env.engine()
    engine.run()
    env.execute("UPDATE merchant SET status = 'restricted' WHERE merchant_id <= 200")
    last_source_write = env.current_wal()
    report = engine.run()
    # The sinks' own writes (same cluster) come after the last source change; the slot is past them too.
    assert parse_lsn(report["end_lsn"]) > last_source_write
    assert report["lag_seconds"] is not None and 0 <= report["lag_seconds"] < 60
    assert report["retained_bytes"] >= report["lag_bytes"] >= 0
    conn = psycopg2.connect(**env.cdc_kwargs())
    ledger = PostgresConfirmLedger(env.warehouse_connect)
    try:
        health = check_slot(conn, load_manifest(manifest_dict(env.slot)), ledger).as_dict()
    finally:
        conn.close()
        ledger.close()
    assert health["healthy"] and health["ledger_lsn"] == report["end_lsn"]
    assert health["lag_seconds"] is not None and health["safe_wal_size"] is not None


if __name__ == "__main__":
    Databases(*sys.argv[1:5]).engine().run()
