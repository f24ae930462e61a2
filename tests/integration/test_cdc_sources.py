"""A third source is a manifest and two connections: no code changes, no edits elsewhere."""

from __future__ import annotations

import json
import os
import textwrap
import uuid

import pytest

from paydata import settings

pytestmark = pytest.mark.integration


def conn_env(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


def connection_to(conn_id: str, database: str) -> str:
    """The JSON of ``conn_id``'s connection pointed at another database."""
    settings.connection(conn_id)  # loads the stack's env file if needed
    data = json.loads(os.environ[conn_env(conn_id)])
    return json.dumps({**data, "schema": database})


def test_a_source_added_as_a_manifest_and_connections_is_captured(stack, fresh_database, admin_connect, tmp_path,
                                                                  monkeypatch):
    from paydata.cdc.engine import engine_for_source
    from paydata.cdc.sinks.warehouse import WarehouseSink

    source = f"payouts_{uuid.uuid4().hex[:8]}"
    source_db = fresh_database(prefix="srcx", owner="oltp_owner")
    warehouse_db = fresh_database(prefix="whx", owner="warehouse_owner")
    monkeypatch.setenv(settings.CDC_MANIFEST_DIR_VARIABLE, str(tmp_path))
    monkeypatch.setenv(conn_env(settings.capture_conn_id(source)), connection_to("paydata_cdc_oltp", source_db))
    monkeypatch.setenv(conn_env(settings.owner_conn_id(source)), connection_to(settings.OLTP_CONN_ID, source_db))
    monkeypatch.setenv(conn_env(settings.WAREHOUSE_CONN_ID), connection_to(settings.WAREHOUSE_CONN_ID, warehouse_db))
    # The run's bookkeeping connects as the loader; this scratch warehouse is not migrated, so its
    # owner stands in (tests/integration/test_warehouse_sink.py runs the sink as the loader itself).
    monkeypatch.setenv(conn_env(settings.WAREHOUSE_LOADER_CONN_ID),
                       connection_to(settings.WAREHOUSE_CONN_ID, warehouse_db))
    (tmp_path / f"{source}.yaml").write_text(textwrap.dedent(f"""
        source: {source}
        slot: t_{source}
        publication: t_{source}
        tables:
          bank_transfer:
            key: [transfer_id]
            sinks: [warehouse]
            columns: {{transfer_id: keep, iban: tokenise:iban, amount: keep}}
    """))
    owner = settings.pg_connect(settings.owner_conn_id(source))
    owner.autocommit = True
    with owner.cursor() as cursor:
        cursor.execute("CREATE TABLE bank_transfer (transfer_id bigint PRIMARY KEY, iban text NOT NULL, amount bigint)")
        cursor.execute("GRANT SELECT ON bank_transfer TO paydata_cdc")
        cursor.execute("INSERT INTO bank_transfer VALUES (1, 'GB33BUKB20201555555555', 100), "
                       "(2, 'DE89370400440532013000', 200)")
    try:
        assert source in settings.cdc_sources()
        engine = engine_for_source(source, sinks=[WarehouseSink(lambda: settings.pg_connect(settings.WAREHOUSE_CONN_ID))])
        assert engine.run()["snapshot"]["rows"] == {"bank_transfer": 2}
        with owner.cursor() as cursor:
            cursor.execute("UPDATE bank_transfer SET amount = 150 WHERE transfer_id = 1")
        report = engine_for_source(source, sinks=[WarehouseSink(
            lambda: settings.pg_connect(settings.WAREHOUSE_CONN_ID))]).run()
        assert report["caught_up"] and report["applied"]["warehouse"] == 1
        warehouse = settings.pg_connect(settings.WAREHOUSE_CONN_ID)
        try:
            with warehouse.cursor() as cursor:
                cursor.execute(f'SELECT transfer_id, iban, amount FROM staging."{source}_bank_transfer" ORDER BY 1')
                rows = cursor.fetchall()
        finally:
            warehouse.close()
        assert [(r[0], r[2]) for r in rows] == [(1, 150), (2, 200)]
        assert all(r[1].startswith("tok_") for r in rows)  # the IBAN never left the source
    finally:
        admin = admin_connect(source_db)
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                           "WHERE slot_name = %s AND active_pid IS NOT NULL", (f"t_{source}",))
            cursor.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                           (f"t_{source}",))
        admin.close()
        owner.close()
