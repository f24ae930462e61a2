"""The whole pipeline on real services: sources -> CDC -> staging + MongoDB -> marts -> reconciliation.

Everything runs in fresh databases (reference, OLTP, warehouse, Mongo) with the shipped migrations,
the shipped capture manifests (slot and publication renamed per test), both real sinks, the
generator's traffic and the concurrent application writers. It checks what a user relies on:
staging equals the sources row for row, Mongo holds one payment per charge, the marts reconcile
with the OLTP ledger, the slot never passes what the sinks stored, and no personal data written
to the sources appears in any downstream store.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extras import LogicalReplicationConnection

from paydata import settings
from paydata.cdc.deadletters import PostgresDeadLetterStore
from paydata.cdc.engine import CdcEngine, EngineLimits
from paydata.cdc.ledger import PostgresConfirmLedger
from paydata.cdc.manifest import MANIFEST_DIR, load_manifest
from paydata.cdc.model import STAGING_SCHEMA, Position, staging_table
from paydata.cdc.pgoutput import parse_lsn
from paydata.cdc.sinks.mongo import MongoSink
from paydata.cdc.sinks.warehouse import WarehouseSink
from paydata.crypto.pii import find_pii
from paydata.generator import TrafficConfig
from paydata.generator.loader import load_traffic
from paydata.generator.reference import apply_merchant_changes, load_merchant_profiles, seed_reference
from paydata.migrations import apply_migrations
from paydata.oltp import app
from paydata.oltp.erasure import erase_customer
from paydata.oltp.reference_sync import sync_reference
from paydata.oltp.writers import run_writers
from paydata.sql import SQL_ROOT, SqlLibrary
from paydata.warehouse import build, label_charges, reconcile, refresh_aggregates
from tests.staging_layout import create_staging_layout

TEST_SQL = SqlLibrary(settings.REPO_ROOT / "tests" / "sql")

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_keystore")]

START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
KNOWN_EMAIL = "ada.lovelace.e2e@example.org"
KNOWN_NAME = "Ada Lovelace-Byron"
KNOWN_PHONE = "+442079460123"
KNOWN_PAN = "4111111111111111"
KNOWN_IP = "203.0.113.77"


def _manifest(source: str, suffix: str):
    import yaml

    data = yaml.safe_load((MANIFEST_DIR / f"{source}.yaml").read_text())
    data["slot"] = data["publication"] = f"t_e2e_{source}_{suffix}"
    return load_manifest(data)


class Pipeline:
    def __init__(self, admin_connect, databases: dict[str, str], mongo_db, suffix: str):
        self.admin_connect = admin_connect
        self.databases = databases
        self.mongo_db = mongo_db
        self.manifests = {source: _manifest(source, suffix) for source in ("reference", "oltp")}
        self.sinks = [WarehouseSink(self.warehouse_connect), MongoSink(lambda: mongo_db)]

    def warehouse_connect(self):
        kwargs = settings.connection(settings.WAREHOUSE_CONN_ID).psycopg2_kwargs(dbname=self.databases["warehouse"])
        return psycopg2.connect(**kwargs)

    def source(self, name: str):
        return self.admin_connect(self.databases[name])

    def engine(self, source: str) -> CdcEngine:
        cdc = settings.connection(f"paydata_cdc_{source}").psycopg2_kwargs(dbname=self.databases[source])
        return CdcEngine(
            self.manifests[source],
            self.sinks,
            connect=lambda: psycopg2.connect(**cdc),
            replication_connect=lambda: psycopg2.connect(connection_factory=LogicalReplicationConnection, **cdc),
            owner_connect=lambda: self.source(source),
            limits=EngineLimits(batch_changes=2000),
            stream_params=lambda: cdc,
            ledger=PostgresConfirmLedger(self.warehouse_connect),
            dead_letters=PostgresDeadLetterStore(self.warehouse_connect),
        )

    def capture(self) -> None:
        for source in ("reference", "oltp"):
            report = self.engine(source).run()
            assert report["caught_up"], report

    def source_rows(self, source: str, table: str) -> dict:
        manifest = self.manifests[source]
        columns = manifest.tables[table].captured_columns
        conn = self.source(source)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql.SQL("SELECT {} FROM {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)))
                rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        finally:
            conn.close()
        captured = (manifest.capture_row(table, row, kind="snapshot", position=Position.zero(), commit_time=None)
                    for row in rows)
        return {tuple(change.key.values()): change.row for change in captured}

    def staged_rows(self, source: str, table: str) -> dict:
        spec = self.manifests[source].tables[table]
        columns = spec.captured_columns
        conn = self.warehouse_connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql.SQL("SELECT {} FROM {} WHERE NOT _is_deleted").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)),
                    sql.Identifier(STAGING_SCHEMA, staging_table(source, table))))
                rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        finally:
            conn.close()
        return {tuple(row[k] for k in spec.key): row for row in rows}

    def warehouse_text(self) -> list[str]:
        """Every row of every staging and marts table as JSON texts (one per table), for the PII scan."""
        conn = self.warehouse_connect()
        chunks = []
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT table_schema, table_name FROM information_schema.tables "
                               "WHERE table_schema IN ('staging', 'marts') AND table_type = 'BASE TABLE'")
                for schema, table in cursor.fetchall():
                    cursor.execute(sql.SQL("SELECT coalesce(json_agg(t)::text, '') FROM {} AS t").format(
                        sql.Identifier(schema, table)))
                    chunks.append(cursor.fetchone()[0])
        finally:
            conn.close()
        return [chunk for chunk in chunks if chunk]

    def mongo_text(self) -> list[str]:
        return [
            json.dumps(list(self.mongo_db[name].find({})), default=str)
            for name in self.mongo_db.list_collection_names()
        ]

    def confirmed_flush(self, source: str) -> int:
        conn = self.source(source)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                               (self.manifests[source].slot,))
                return parse_lsn(cursor.fetchone()[0])
        finally:
            conn.close()

    def drop_slots(self) -> None:
        for source, manifest in self.manifests.items():
            conn = self.source(source)
            conn.autocommit = True
            try:
                with conn.cursor() as cursor:
                    cursor.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                                   "WHERE slot_name = %s AND active_pid IS NOT NULL", (manifest.slot,))
                    cursor.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                   "WHERE slot_name = %s", (manifest.slot,))
            finally:
                conn.close()


@pytest.fixture
def pipeline(stack, admin_connect, fresh_database, mongo_db):
    databases = {
        "reference": fresh_database(prefix="e2eref"),
        "oltp": fresh_database(prefix="e2eoltp"),
        "warehouse": fresh_database(prefix="e2ewh", owner="warehouse_owner"),
    }
    for name in ("reference", "oltp"):
        conn = admin_connect(databases[name])
        try:
            apply_migrations(conn, name)
        finally:
            conn.close()
    environment = Pipeline(admin_connect, databases, mongo_db, uuid.uuid4().hex[:10])
    yield environment
    for sink in environment.sinks:
        close = getattr(sink, "close", None)
        if close:
            close()
    environment.drop_slots()


def test_sources_flow_to_staging_mongo_and_marts_exactly_once_without_pii(pipeline):
    ref, oltp = pipeline.source("reference"), pipeline.source("oltp")
    try:
        seed_reference(ref, merchants=12, seed=5, fx_start=START.date(), fx_days=3)
        sync_reference(ref, oltp)
        load_traffic(oltp, TrafficConfig(payments=1200, start=START, days=2, seed=5),
                     load_merchant_profiles(ref), progress=False)

        # Initial load: the exported snapshot of both sources.
        pipeline.capture()

        # Streaming: merchant attribute changes (SCD2 input), application writes with known
        # personal data, concurrent writers, and an erasure, all after the snapshot.
        apply_merchant_changes(ref, count=6, seed=5)
        merchant_id = load_merchant_profiles(ref)[0].merchant_id
        customer_id = app.create_customer(oltp, merchant_id, KNOWN_EMAIL, name=KNOWN_NAME, phone=KNOWN_PHONE,
                                          country="GB")
        card_id = app.add_card(oltp, customer_id, KNOWN_PAN, 12, START.year + 3)
        app.create_payment(oltp, merchant_id, customer_id, card_id, 4200, ip_address=KNOWN_IP,
                           device_id="dev-e2e", session_id="sess-e2e", outcome="succeeded")
        stats = run_writers(3, ops_per_worker=150, seed=9,
                            conn_factory=lambda: pipeline.source("oltp"))
        assert not stats.errors, stats.as_dict()
        other_customer = app.create_customer(oltp, merchant_id, "erase.me.e2e@example.org", country="GB")
        erase_customer(oltp, other_customer, "data_subject_request")
    finally:
        ref.close()
        oltp.close()

    pipeline.capture()
    pipeline.capture()  # a second run over a caught-up slot changes nothing

    # Staging equals the sources, row for row, over every captured table.
    for source, manifest in pipeline.manifests.items():
        for table, spec in manifest.tables.items():
            if "warehouse" in spec.sinks:
                assert pipeline.staged_rows(source, table) == pipeline.source_rows(source, table), f"{source}.{table}"

    # Caught up: both sinks applied the last streamed commit and the slot confirmed it (that the slot
    # never passes the sinks under crashes is what test_cdc_crash checks).
    for source in ("reference", "oltp"):
        flushed = pipeline.confirmed_flush(source)
        for sink in pipeline.sinks:
            applied = sink.applied_position(source)
            assert applied > Position.zero(), (source, sink.name)
            assert applied.commit_lsn <= flushed, (source, sink.name)

    # Mongo: one live payment document per charge, and merchant profiles for every merchant.
    oltp_charges = pipeline.source_rows("oltp", "charge")
    live_payments = pipeline.mongo_db["payments"].count_documents({"deleted": {"$ne": True}})
    assert live_payments == len(oltp_charges)
    assert pipeline.mongo_db["merchant_profiles"].count_documents({}) == 12

    # Marts: the SCD2 history exists, and the fact reconciles with the OLTP ledger per day.
    warehouse = pipeline.warehouse_connect()
    oltp = pipeline.source("oltp")
    try:
        report = build(warehouse)
        window = report["fact_window"]
        result = reconcile(warehouse, oltp, window["first_day"], window["last_day"],
                           window["max_balance_transaction_id"])
        assert result["days"] >= 2
        with warehouse.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM marts.dim_merchant")
            versions = cursor.fetchone()[0]
        warehouse.rollback()
        assert versions > 12  # merchant changes produced new versions
        with oltp.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM balance_transaction")
            ledger_rows = cursor.fetchone()[0]
        with warehouse.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM marts.fct_balance_transaction")
            fact_rows = cursor.fetchone()[0]
        assert fact_rows == ledger_rows
        with warehouse.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM marts.fct_charge WHERE NOT is_deleted")
            charge_rows = cursor.fetchone()[0]
        warehouse.rollback()
        assert charge_rows == len(oltp_charges)  # every attempt, declined ones included
        assert build(warehouse)["up_to_date"]  # nothing new: the rerun is a no-op
        refresh_aggregates(warehouse)
        labelled = label_charges(warehouse, as_of=START + dt.timedelta(days=120))  # every label matured
        assert labelled["matured"] > 0 and labelled["matured"] == labelled["charges"]
        for example in sorted((SQL_ROOT / "warehouse/queries/examples").glob("*.sql")):
            with warehouse.cursor() as cursor:
                cursor.execute(example.read_text(), {"days": 30, "limit": 20})
                assert cursor.fetchall(), f"example query {example.name} returned no rows"
            warehouse.rollback()
    finally:
        warehouse.close()
        oltp.close()

    # No personal data from the sources anywhere downstream.
    for store, texts in (("warehouse", pipeline.warehouse_text()), ("mongo", pipeline.mongo_text())):
        assert texts, store
        text = "\n".join(texts)
        for value in (KNOWN_EMAIL, KNOWN_NAME, KNOWN_PHONE, KNOWN_PAN, KNOWN_IP, "erase.me.e2e@example.org"):
            assert value not in text, f"{value!r} found in {store}"
        # Generic scan over string values (numeric ids and hashes are not where a PAN would hide as text).
        strings = "\n".join(_strings([json.loads(chunk) for chunk in texts]))
        findings = [(kind, match) for kind, match in find_pii(strings) if kind in ("email", "pan", "ipv4", "ipv6")]
        assert findings == [], f"PII-like values in {store}: {findings[:5]}"


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


# Staging tables the engine creates beside the sink's (dead-letter store, confirm ledger): not the sink's layout.
ENGINE_BOOKKEEPING = frozenset({"cdc_dead_letters", "cdc_slot_ledger"})


def _staging_structure(conn) -> tuple[dict, dict]:
    """Columns (type, nullability, default) and index definitions of the sink's staging tables, by table."""
    with conn.cursor() as cursor:
        cursor.execute(TEST_SQL.load("warehouse/staging_columns.sql"))
        columns: dict[str, dict[str, tuple]] = {}
        for table, column, *definition in cursor.fetchall():
            columns.setdefault(table, {})[column] = tuple(definition)
        cursor.execute(TEST_SQL.load("warehouse/staging_indexes.sql"))
        indexes: dict[str, dict[str, str]] = {}
        for table, index, definition in cursor.fetchall():
            indexes.setdefault(table, {})[index] = definition
    conn.rollback()
    return (
        {table: value for table, value in columns.items() if table not in ENGINE_BOOKKEEPING},
        {table: value for table, value in indexes.items() if table not in ENGINE_BOOKKEEPING},
    )


def test_generated_staging_layout_is_what_a_capture_run_creates(pipeline, fresh_database, admin_connect):
    """The marts tests build on a layout generated from the shipped manifests without running capture.

    A real capture run types its specs from the live source catalog and creates the tables through
    the engine and the sink; the generated layout must be the same tables, columns, types, keys and
    indexes, in both directions (a table or index one side lacks is drift too).
    """
    pipeline.capture()  # empty sources: the snapshot creates every staging table through the real sink
    real = pipeline.warehouse_connect()
    layout_db = admin_connect(fresh_database(prefix="e2elayout"))
    try:
        create_staging_layout(layout_db, admin_connect)
        created_by_sink, generated = _staging_structure(real), _staging_structure(layout_db)
    finally:
        real.close()
        layout_db.close()
    generated_columns, generated_indexes = generated
    assert {"cdc_offsets", "oltp_charge", "reference_merchant", "reference_merchant_history"} <= set(generated_columns)
    assert generated_indexes["oltp_charge"], "the generated layout has no index on staging.oltp_charge"
    assert generated == created_by_sink
