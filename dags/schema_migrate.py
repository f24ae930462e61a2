"""
### Schema migrations

Applies the versioned SQL migrations in `include/sql/<database>/migrations/V<NNN>__<name>.sql` to each
managed database, in version order, each migration in its own transaction and under an advisory
lock. Applying twice is a no-op; an applied file that was edited afterwards fails the task and
names the file (history is never rewritten: add a new migration instead).

Order: the key store first; then any data keys still held by a source database (from before the
key store existed) move into it; then the reference and OLTP databases, whose migrations drop
the emptied key tables; then the warehouse, whose staging layout follows the sources' catalogs.

`apply_mongo_definitions` brings the MongoDB collections, validators and indexes of
`include/nosql/collections.json` in line, as the Mongo administrator (`paydata_mongo`): the
pipelines' own Mongo users may read and write documents but not change definitions.

It connects as the schema owners (`paydata_reference`, `paydata_oltp`, `paydata_warehouse`,
`paydata_keystore`). After the warehouse's migrations it applies the marts, the CDC staging layout
of every captured source and the capture bookkeeping tables, which the warehouse loader (the CDC
sink and `warehouse_build` run as it) may not create.

Triggered manually and by `make demo`; the local stack also applies migrations and Mongo
definitions on `up`. XCom carries the list of versions applied per database, the number of keys
moved and the list of Mongo definition changes.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from paydata.dagconfig import DAG_FAILURE, default_args, route

SOURCE_DATABASES = ["reference", "oltp"]


def _apply(database: str) -> list[str]:
    from paydata.migrations import apply_definitions, apply_migrations
    from paydata.settings import POSTGRES_DATABASES, pg_connect

    conn = pg_connect(POSTGRES_DATABASES[database])
    try:
        applied = apply_migrations(conn, database)
    finally:
        conn.close()
    apply_definitions(database)  # the warehouse's marts and staging layout, which the loader may not create
    return applied


@dag(
    dag_id="schema_migrate",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    description="Apply versioned SQL migrations and the MongoDB collection definitions (manual)",
    dagrun_timeout=pendulum.duration(hours=1),
    tags=["paydata", "platform", "schema"],
    doc_md=__doc__,
    on_failure_callback=DAG_FAILURE,
    default_args=default_args(execution_timeout=pendulum.duration(minutes=30)),
)
def schema_migrate():
    @task
    def apply_keystore() -> list[str]:
        return _apply("keystore")

    @task
    def move_legacy_keys(_applied: list[str]) -> list[dict]:
        from paydata.keystore.legacy import move_legacy_keys as move
        from paydata.keystore.store import KeyStore
        from paydata.settings import POSTGRES_DATABASES, pg_connect

        store = KeyStore()
        try:
            moved = []
            for database in SOURCE_DATABASES:
                conn = pg_connect(POSTGRES_DATABASES[database])
                try:
                    moved.append(move(conn, database, store).as_dict())
                finally:
                    conn.close()
            return moved
        finally:
            store.close()

    @task
    def apply(database: str) -> list[str]:
        return _apply(database)

    @task
    def apply_mongo_definitions() -> list[str]:
        from paydata.nosql import apply_definitions
        from paydata.settings import MONGO_CONN_ID, mongo_database

        database = mongo_database(MONGO_CONN_ID)
        try:
            return apply_definitions(database)
        finally:
            database.client.close()

    @task
    def apply_warehouse(_sources: list[list[str]]) -> list[str]:
        # After the sources: the staging layout follows their (migrated) catalogs.
        return _apply("warehouse")

    moved = move_legacy_keys(apply_keystore())
    sources = apply.expand(database=SOURCE_DATABASES)
    moved >> sources
    apply_warehouse(sources)
    apply_mongo_definitions()


route(schema_migrate())
