"""Dead letters against real Postgres: a value the policy cannot capture costs only its change.

A ``device_event`` table whose ``device_id`` the manifest tokenises (the tokeniser refuses blank
values, as it must: one token for every blank would join unrelated rows), captured into the real
warehouse sink in fresh databases with their own slot.
"""

from __future__ import annotations

import uuid

import psycopg2
import pytest
from psycopg2.extras import LogicalReplicationConnection

from paydata import settings
from paydata.cdc.deadletters import PostgresDeadLetterStore
from paydata.cdc.engine import CaptureError, CdcEngine, EngineLimits
from paydata.cdc.ledger import PostgresConfirmLedger
from paydata.cdc.manifest import load_manifest
from paydata.cdc.sinks.warehouse import WarehouseSink

pytestmark = pytest.mark.integration

SOURCE = "dlsrc"
SCHEMA = """
CREATE TABLE device_event (id bigint PRIMARY KEY, device_id text, amount bigint NOT NULL);
GRANT USAGE ON SCHEMA public TO paydata_cdc;
GRANT SELECT ON device_event TO paydata_cdc;
"""


def manifest_dict(slot: str, on_error: str = "dead_letter") -> dict:
    return {
        "source": SOURCE, "slot": slot, "publication": slot,
        "tables": {"device_event": {"key": ["id"], "sinks": ["warehouse"], "history": True, "on_error": on_error,
                                    "columns": {"id": "keep", "device_id": "tokenise:device", "amount": "keep"}}},
    }


class Env:
    def __init__(self, source_db, warehouse_db, slot, admin_connect):
        self.source_db, self.warehouse_db, self.slot = source_db, warehouse_db, slot
        self.src = admin_connect(source_db)
        self.src.autocommit = True
        self.admin_connect = admin_connect

    def cdc_kwargs(self):
        return settings.connection("paydata_cdc_oltp").psycopg2_kwargs(dbname=self.source_db)

    def warehouse_connect(self):
        return psycopg2.connect(**settings.connection(settings.WAREHOUSE_CONN_ID).psycopg2_kwargs(
            dbname=self.warehouse_db))

    def engine(self, on_error: str = "dead_letter", tokenise=None) -> CdcEngine:
        manifest = load_manifest(manifest_dict(self.slot, on_error))
        manifest.tokenise = tokenise
        return CdcEngine(
            manifest, [WarehouseSink(self.warehouse_connect)],
            connect=lambda: psycopg2.connect(**self.cdc_kwargs()),
            replication_connect=lambda: psycopg2.connect(connection_factory=LogicalReplicationConnection,
                                                         **self.cdc_kwargs()),
            owner_connect=lambda: self.admin_connect(self.source_db),
            stream_params=self.cdc_kwargs,
            ledger=PostgresConfirmLedger(self.warehouse_connect),
            dead_letters=PostgresDeadLetterStore(self.warehouse_connect),
            limits=EngineLimits(batch_changes=50),
        )

    def execute(self, statement, params=None):
        with self.src.cursor() as cursor:
            cursor.execute(statement, params)

    def warehouse(self, statement, params=None):
        conn = self.warehouse_connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement, params)
                return cursor.fetchall()
        finally:
            conn.close()

    def staged(self) -> dict[int, tuple]:
        rows = self.warehouse("SELECT id, device_id, amount, _commit_lsn, _index_in_txn FROM staging.dlsrc_device_event "
                              "WHERE NOT _is_deleted")
        return {row[0]: row[1:] for row in rows}

    def letters(self) -> list[tuple]:
        return self.warehouse("SELECT table_name, kind, key_text, columns, reason, resolution "
                              "FROM staging.cdc_dead_letters ORDER BY commit_lsn, index_in_txn")

    def slot_position(self) -> str:
        with self.src.cursor() as cursor:
            cursor.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                           (self.slot,))
            return cursor.fetchone()[0]


@pytest.fixture
def env(stack, fresh_database, admin_connect):
    environment = Env(fresh_database(prefix="dlsrc"), fresh_database(prefix="dlwh", owner="warehouse_owner"),
                      f"t_dl_{uuid.uuid4().hex[:12]}", admin_connect)
    environment.execute(SCHEMA)
    environment.execute("INSERT INTO device_event SELECT g, 'dev-' || g, g FROM generate_series(1, 5) g")
    yield environment
    environment.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                        "WHERE slot_name = %s AND active_pid IS NOT NULL", (environment.slot,))
    environment.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                        (environment.slot,))
    environment.src.close()


def test_a_blank_identifier_is_dead_lettered_the_stream_goes_on_and_a_fix_supersedes_it(env):
    engine = env.engine()
    engine.run()
    env.execute("UPDATE device_event SET device_id = '   ', amount = 20 WHERE id = 2")
    env.execute("INSERT INTO device_event VALUES (6, 'dev-6', 6)")
    report = engine.run()
    assert report["caught_up"] and report["dead_lettered"] == 1 and report["dead_letters_unresolved"] == 1
    staged = env.staged()
    assert 6 in staged and staged[2][1] == 2  # the bad version is not staged; the rest of the stream is
    assert env.letters() == [("device_event", "update", "2", ["device_id"], "InvalidInput", None)]
    # The next run does not stop on it, and records nothing twice.
    assert engine.run()["caught_up"] and len(env.letters()) == 1

    # Replay before the cause is fixed: still failing, still pending.
    assert engine.replay()["still failing"] == 1 and env.letters()[0][5] is None
    # Fixing the row is a new change; it streams, and the dead letter is then superseded on replay.
    env.execute("UPDATE device_event SET device_id = 'dev-2b' WHERE id = 2")
    engine.run()
    staged_before = env.staged()
    assert engine.replay() == {"source": SOURCE, "replayed": 0, "superseded": 1, "deleted in source": 0,
                               "still failing": 0}
    assert env.staged() == staged_before and env.letters()[0][5] == "superseded"
    assert engine.replay()["superseded"] == 0  # resolved letters are not replayed again


def test_replay_applies_a_dead_letter_at_its_own_position_once_the_cause_is_fixed(env):
    # A tokeniser that refuses one value stands in for a cause outside the row (a policy or key-ring fault).
    from paydata.crypto import tokenise

    def faulty(value, domain):
        if value == "dev-3-new":
            raise ValueError("tokeniser unavailable for this value")
        return tokenise(value, domain=domain)

    env.engine().run()
    env.execute("UPDATE device_event SET device_id = 'dev-3-new', amount = 33 WHERE id = 3")
    report = env.engine(tokenise=faulty).run()
    assert report["dead_lettered"] == 1 and env.staged()[3][1] == 3
    outcome = env.engine().replay()
    assert outcome["replayed"] == 1
    staged = env.staged()
    assert staged[3][1] == 33 and staged[3][0] == tokenise("dev-3-new", domain="device")
    # Staged at the dead letter's own position, below the offset, which did not move.
    lsn, index = env.warehouse("SELECT commit_lsn, index_in_txn FROM staging.cdc_dead_letters")[0]
    assert staged[3][2:] == (lsn, index)
    history = env.warehouse("SELECT amount FROM staging.dlsrc_device_event_history WHERE id = 3 ORDER BY _commit_lsn")
    assert [row[0] for row in history] == [3, 33]


def test_a_dead_letter_whose_row_was_deleted_is_superseded_by_the_delete(env):
    engine = env.engine()
    engine.run()
    env.execute("UPDATE device_event SET device_id = '' WHERE id = 4")
    env.execute("DELETE FROM device_event WHERE id = 4")
    assert engine.run()["dead_lettered"] == 1
    assert 4 not in env.staged()
    assert engine.replay()["superseded"] == 1


def test_on_error_stop_fails_the_run_without_advancing_the_slot(env):
    engine = env.engine(on_error="stop")
    engine.run()
    before = env.slot_position()
    env.execute("UPDATE device_event SET device_id = ' ' WHERE id = 5")
    with pytest.raises(CaptureError, match=r"dlsrc.device_event change .*\(key 5\).*InvalidInput.*on_error: stop"):
        engine.run()
    assert env.slot_position() == before and env.staged()[5][1] == 5


def test_a_snapshot_row_that_cannot_be_captured_is_dead_lettered(env):
    env.execute("UPDATE device_event SET device_id = '' WHERE id = 1")
    report = env.engine().run()
    assert report["snapshot"]["rows"]["device_event"] == 5 and report["dead_lettered"] == 1
    assert set(env.staged()) == {2, 3, 4, 5}
    assert env.letters() == [("device_event", "snapshot", "1", ["device_id"], "InvalidInput", None)]
