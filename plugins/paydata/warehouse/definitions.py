"""The warehouse's definitions beyond its migrations, applied by the migrate step as the owner.

The marts (``ensure_marts``), the CDC staging mirrors of every captured source (their columns
follow the source catalog and the capture manifest, so they are derived, not written as
migrations), the capture bookkeeping tables (confirm ledger, dead letters), the feature store of
the current feature definitions and the scoring and monitoring tables are created here, once per
migrate run, by the warehouse owner.
The jobs that fill them connect as ``warehouse_loader`` or ``ml``, which may not run DDL: they only
check, with reads, that the definitions are in place and name ``python -m paydata.migrations apply
--db warehouse`` when not (docs/security.md, *Which role each job connects as*).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from paydata.sql import load_sql


def apply_warehouse_definitions(
    warehouse_connect: Callable[[], Any], source_connect: Callable[[str], Any], sources: list[str] | None = None
) -> dict[str, Any]:
    """Apply the marts, the staging layout of each source in ``sources`` (default: every manifest)
    and the bookkeeping tables; return what was applied. Idempotent.

    ``warehouse_connect()`` opens a connection as the warehouse owner; ``source_connect(source)``
    one to the source database (only its catalog is read).
    """
    from paydata import settings
    from paydata.cdc import capture
    from paydata.cdc.deadletters import PostgresDeadLetterStore
    from paydata.cdc.ledger import PostgresConfirmLedger
    from paydata.cdc.manifest import load_manifest
    from paydata.cdc.sinks.warehouse import WarehouseSink
    from paydata.warehouse.schema import ensure_marts

    conn = warehouse_connect()
    try:
        ensure_marts(conn)
    finally:
        conn.close()
    applied: dict[str, Any] = {"marts": True, "staging": {}}
    for source in settings.cdc_sources() if sources is None else sources:
        manifest = load_manifest(source)
        source_conn = source_connect(source)
        try:
            catalog = capture.read_catalog(source_conn, list(manifest.tables))
        finally:
            source_conn.close()
        specs = [spec for spec in manifest.table_specs(catalog) if WarehouseSink.name in spec.sinks]
        sink = WarehouseSink(warehouse_connect)
        try:
            sink.prepare(specs)
        finally:
            sink.close()
        applied["staging"][source] = sorted(spec.table for spec in specs)
    for store in (PostgresConfirmLedger(warehouse_connect), PostgresDeadLetterStore(warehouse_connect)):
        try:
            store.define()
        finally:
            store.close()
    applied["bookkeeping"] = True
    conn = warehouse_connect()
    try:
        # The feature store of the current definitions (the ml role fills it, and may not create it).
        from ml.features.definitions import load_definitions
        from ml.features.offline import ensure_features

        definitions = load_definitions()
        ensure_features(conn, definitions)
        applied["features"] = definitions.offline_table
        # The scoring and monitoring tables (the ml role writes them, and may not create them).
        with conn.cursor() as cursor:
            cursor.execute(load_sql("warehouse/queries/scoring/schema.sql"))
            cursor.execute(load_sql("warehouse/queries/monitoring/schema.sql"))
        conn.commit()
        applied["ml_tables"] = True
        # Grants on named tables the steps above may just have created (warehouse migration V003).
        with conn.cursor() as cursor:
            cursor.execute(load_sql("warehouse/queries/schema/apply_table_grants.sql"))
        conn.commit()
    finally:
        conn.close()
    return applied
