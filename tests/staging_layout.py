"""The staging layout that tests and benchmarks build on, generated from the shipped capture manifests.

The warehouse sink creates its staging tables from table plans (``paydata.cdc.sinks.warehouse.tables``);
this module runs the same code over the table specs of the shipped manifests (``include/cdc``),
typed against the sources' schema as their migrations leave it. The result is the layout a first
capture run creates before its first batch, with no copy of it kept by hand. The sources' catalogs
are read once per process, from scratch databases migrated for the purpose and dropped again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from paydata.cdc.capture import read_catalog
from paydata.cdc.manifest import MANIFEST_DIR, Manifest, load_manifest
from paydata.cdc.model import TableSpec
from paydata.cdc.sinks.warehouse.tables import create_layout
from paydata.migrations import apply_migrations
from paydata.stack.config import PG_SUPERUSER
from paydata.stack.postgres import sql_statement

AdminConnect = Callable[[str], Any]  # dbname -> superuser psycopg2 connection


def shipped_manifests() -> list[Manifest]:
    return [load_manifest(path) for path in sorted(MANIFEST_DIR.glob("*.yaml"))]


def _migrated_catalog(admin_connect: AdminConnect, manifest: Manifest) -> dict:
    """The catalog of ``manifest``'s tables in a scratch database migrated like its source."""
    scratch = f"layout_{manifest.source}_{uuid.uuid4().hex[:12]}"
    admin = admin_connect("postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql_statement("create_database", database=scratch, owner=PG_SUPERUSER))
        conn = admin_connect(scratch)
        try:
            apply_migrations(conn, manifest.source)
            return read_catalog(conn, list(manifest.tables))
        finally:
            conn.close()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(sql_statement("drop_database_force", database=scratch))
        admin.close()


_shipped_specs: list[tuple[TableSpec, ...]] = []  # filled on first use: the specs depend on files only


def shipped_specs(admin_connect: AdminConnect) -> tuple[TableSpec, ...]:
    """Every table spec of the shipped manifests, as a capture run against migrated sources makes them."""
    if not _shipped_specs:
        specs: list[TableSpec] = []
        for manifest in shipped_manifests():
            specs.extend(manifest.table_specs(_migrated_catalog(admin_connect, manifest)))
        _shipped_specs.append(tuple(specs))
    return _shipped_specs[0]


def create_staging_layout(conn: Any, admin_connect: AdminConnect) -> None:
    """Create the staging layout in ``conn``'s database and commit."""
    with conn.cursor() as cursor:
        create_layout(cursor, shipped_specs(admin_connect))
    conn.commit()
