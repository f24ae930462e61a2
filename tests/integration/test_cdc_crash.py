"""Crash test: the engine is SIGKILLed at random points while four writers change the source.

After every kill the slot must not be ahead of the warehouse: no captured transaction may commit
between the warehouse's stored offset and the slot's confirmed flush position. After quiescing and
a final run, every staging table equals its source table row for row (checksum over the captured
columns, tokens included). The engine runs in a subprocess: this file is also its entry point.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
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

SOURCE = "crash"
WRITERS = 4
KILLS = 10
SCHEMA = """
CREATE TABLE account (id bigint PRIMARY KEY, customer_id bigint NOT NULL, email_enc bytea,
                      balance bigint NOT NULL, note text);
CREATE TABLE entry (id bigint PRIMARY KEY, account_id bigint NOT NULL, amount bigint NOT NULL);
GRANT USAGE ON SCHEMA public TO paydata_cdc;
GRANT SELECT ON account, entry TO paydata_cdc;
"""


def manifest_dict(slot: str) -> dict:
    return {
        "source": SOURCE,
        "slot": slot,
        "publication": slot,
        "tables": {
            "account": {
                "key": ["id"],
                "sinks": ["warehouse"],
                "history": True,
                "columns": {"id": "keep", "customer_id": "tokenise:customer", "email_enc": "drop",
                            "balance": "keep", "note": "keep"},
            },
            "entry": {
                "key": ["id"],
                "sinks": ["warehouse"],
                "history": True,
                "columns": {"id": "keep", "account_id": "keep", "amount": "keep"},
            },
        },
    }


def _cdc_kwargs(source_db: str) -> dict:
    from paydata import settings

    return settings.connection("paydata_cdc_oltp").psycopg2_kwargs(dbname=source_db)


def _warehouse_connect(warehouse_db: str):
    from paydata import settings

    return psycopg2.connect(**settings.connection(settings.WAREHOUSE_CONN_ID).psycopg2_kwargs(dbname=warehouse_db))


def build_engine(source_db: str, warehouse_db: str, slot: str, slot_busy_wait: float = 20):
    from paydata.cdc.deadletters import PostgresDeadLetterStore
    from paydata.cdc.engine import CdcEngine, EngineLimits
    from paydata.cdc.ledger import PostgresConfirmLedger
    from paydata.cdc.manifest import load_manifest
    from paydata.cdc.sinks.warehouse import WarehouseSink
    from paydata.stack import admin_connect

    return CdcEngine(
        load_manifest(manifest_dict(slot)),
        [WarehouseSink(lambda: _warehouse_connect(warehouse_db))],
        connect=lambda: psycopg2.connect(**_cdc_kwargs(source_db)),
        replication_connect=lambda: psycopg2.connect(
            connection_factory=LogicalReplicationConnection, **_cdc_kwargs(source_db)),
        owner_connect=lambda: admin_connect(source_db),
        limits=EngineLimits(batch_changes=500, snapshot_chunk_rows=1000, slot_busy_wait_seconds=slot_busy_wait),
        stream_params=lambda: _cdc_kwargs(source_db),
        ledger=PostgresConfirmLedger(lambda: _warehouse_connect(warehouse_db)),
        dead_letters=PostgresDeadLetterStore(lambda: _warehouse_connect(warehouse_db)),
    )


def engine_loop(source_db: str, warehouse_db: str, slot: str) -> None:
    """Subprocess entry: run the engine back to back until killed."""
    engine = build_engine(source_db, warehouse_db, slot)
    while True:
        engine.run(max_batches=5)


class Writers:
    """Four threads doing small inserts/updates/deletes (some multi-statement) until stopped."""

    def __init__(self, admin_connect, source_db: str):
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._write, args=(admin_connect(source_db), n), daemon=True)
            for n in range(WRITERS)
        ]

    def _write(self, conn, number: int) -> None:
        rng = random.Random(number)
        next_id = (number + 1) * 1_000_000
        live: list[int] = []
        try:
            while not self.stop.is_set():
                with conn.cursor() as cursor:
                    action = rng.random()
                    if action < 0.5 or not live:
                        cursor.execute(
                            "INSERT INTO account (id, customer_id, email_enc, balance, note) VALUES (%s, %s, %s, %s, %s)",
                            (next_id, rng.randint(1, 50), b"y" * 32, rng.randint(0, 1000), f"n{next_id}"))
                        cursor.execute("INSERT INTO entry (id, account_id, amount) VALUES (%s, %s, %s)",
                                       (next_id, next_id, rng.randint(1, 99)))
                        live.append(next_id)
                        next_id += 1
                    elif action < 0.85:
                        target = rng.choice(live)
                        cursor.execute("UPDATE account SET balance = balance + 1, note = %s WHERE id = %s",
                                       (f"u{rng.random()}", target))
                        cursor.execute("UPDATE entry SET amount = amount + 1 WHERE id = %s", (target,))
                    else:
                        target = live.pop(rng.randrange(len(live)))
                        cursor.execute("DELETE FROM entry WHERE id = %s", (target,))
                        cursor.execute("DELETE FROM account WHERE id = %s", (target,))
                conn.commit()
                time.sleep(rng.uniform(0.0, 0.02))
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


def slot_position(conn, slot: str) -> int | None:
    from paydata.cdc.pgoutput import parse_lsn

    with conn.cursor() as cursor:
        cursor.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        row = cursor.fetchone()
    conn.commit()
    return None if row is None or row[0] is None else parse_lsn(row[0])


def wait_for_slot_to_move(conn, slot: str, before: int | None, timeout: float) -> bool:
    """Wait until the slot's confirmed position passes ``before`` (a batch was confirmed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = slot_position(conn, slot)
        if now is not None and (before is None or now > before):
            return True
        time.sleep(0.05)
    return False


def checksum(conn, relation: sql.Composable, columns: list[str], where: sql.Composable) -> tuple:
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY 1").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), relation, where))
        rows = cursor.fetchall()
    conn.commit()
    return len(rows), rows


@pytest.mark.integration
def test_sigkilled_engine_loses_and_duplicates_nothing(stack, fresh_database, admin_connect):
    from paydata.cdc.manifest import load_manifest
    from paydata.cdc.model import Position
    from paydata.cdc.pgoutput import parse_lsn

    source_db = fresh_database(prefix="crashsrc")
    warehouse_db = fresh_database(prefix="crashwh", owner="warehouse_owner")
    slot = f"t_crash_{uuid.uuid4().hex[:12]}"
    src = admin_connect(source_db)
    src.autocommit = True
    with src.cursor() as cursor:
        cursor.execute(SCHEMA)
        cursor.execute("INSERT INTO account SELECT g, g % 7, NULL, g, 'seed' FROM generate_series(1, 500) g")
    warehouse = _warehouse_connect(warehouse_db)
    rng = random.Random(11)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2] / "plugins"), os.environ.get("PYTHONPATH")]))}
    observations = []
    after_confirm = 0
    process = None
    try:
        with Writers(admin_connect, source_db) as writers:
            for number in range(KILLS):
                before = slot_position(src, slot)
                process = subprocess.Popen(
                    [sys.executable, __file__, source_db, warehouse_db, slot], env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                if number % 2 and before is not None:
                    # Let this process confirm at least one batch, so the kill lands after a confirm.
                    wait_for_slot_to_move(src, slot, before, timeout=20)
                    time.sleep(rng.uniform(0.0, 1.0))
                else:
                    time.sleep(rng.uniform(0.8, 3.0))
                process.send_signal(signal.SIGKILL)
                process.wait()
                assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
                process.stderr.close()
                with src.cursor() as cursor:
                    cursor.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                                   (slot,))
                    row = cursor.fetchone()
                offset = Position.zero()
                with warehouse.cursor() as cursor:
                    cursor.execute("SELECT to_regclass('staging.cdc_offsets') IS NOT NULL")
                    if cursor.fetchone()[0]:
                        cursor.execute("SELECT commit_lsn, index_in_txn FROM staging.cdc_offsets WHERE source = %s",
                                       (SOURCE,))
                        stored = cursor.fetchone()
                        offset = Position(*stored) if stored else offset
                warehouse.commit()
                if row is not None and row[0] is not None:  # NULL: killed while the slot was being created
                    observations.append((offset, parse_lsn(row[0])))
                    after_confirm += before is not None and parse_lsn(row[0]) > before
            assert not writers.errors, writers.errors

        # A killed run's slot creation can hold the slot while it waits for every transaction open in
        # the (shared) cluster, and the cluster may drop a connection; the engine is built to be rerun
        # after any failure, so the final catch-up waits longer and may be retried.
        for attempt in range(3):
            try:
                report = build_engine(source_db, warehouse_db, slot, 90).run(max_batches=10_000)
                break
            except psycopg2.OperationalError:
                if attempt == 2:
                    raise
        assert report["caught_up"], report

        manifest = load_manifest(manifest_dict(slot))
        for table in ("account", "entry"):
            columns = list(manifest.tables[table].captured_columns)
            with src.cursor() as cursor:
                cursor.execute(sql.SQL("SELECT {} FROM {} ORDER BY 1").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)))
                expected = [
                    tuple(manifest.capture_row(table, dict(zip(columns, r, strict=True)), kind="snapshot",
                                               position=Position.zero(), commit_time=None).row.values())
                    for r in cursor.fetchall()
                ]
            staged = checksum(warehouse, sql.Identifier("staging", f"{SOURCE}_{table}"), columns,
                              sql.SQL("NOT _is_deleted"))
            assert staged[0] == len(expected), table
            digest = hashlib.sha256(json.dumps(staged[1], default=str).encode()).hexdigest()
            assert digest == hashlib.sha256(json.dumps(expected, default=str).encode()).hexdigest(), table

        # The slot never led the sink: no captured commit lies between the stored offset and the slot.
        with warehouse.cursor() as cursor:
            cursor.execute(sql.SQL(
                "SELECT DISTINCT _commit_lsn FROM staging.crash_account_history WHERE _index_in_txn >= 0 "
                "UNION SELECT DISTINCT _commit_lsn FROM staging.crash_entry_history WHERE _index_in_txn >= 0"))
            commits = sorted(row[0] for row in cursor.fetchall())
        warehouse.commit()
        assert len(observations) >= 3 and commits
        assert after_confirm >= 2, "the kills never landed after a confirmed batch"
        for offset, flushed in observations:
            skipped = [c for c in commits if offset.commit_lsn < c < flushed]
            assert not skipped, (offset, flushed, skipped[:5])
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        warehouse.close()
        with src.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                           "WHERE slot_name LIKE %s AND active_pid IS NOT NULL", (slot + "%",))
            time.sleep(0.2)
            cursor.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                           "WHERE slot_name LIKE %s AND NOT temporary", (slot + "%",))


if __name__ == "__main__":
    engine_loop(*sys.argv[1:4])
