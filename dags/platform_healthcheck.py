"""
### Platform health check

Connects to every store the platform uses, exactly as the pipelines do (Airflow Connections
`paydata_reference`, `paydata_oltp`, `paydata_warehouse` over TLS 1.3, and `paydata_mongo`),
and writes a heartbeat keyed by the run id: a row in `platform_heartbeat` of each database and a
document in the `platform_heartbeat` collection. Rerunning a run rewrites its own heartbeats.

Fails when a store is unreachable, or when a TCP connection is not encrypted.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task

POSTGRES_CONN_IDS = ["paydata_reference", "paydata_oltp", "paydata_warehouse", "paydata_keystore"]


@dag(
    dag_id="platform_healthcheck",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["paydata", "platform"],
    doc_md=__doc__,
    default_args={"owner": "platform", "retries": 2, "retry_delay": pendulum.duration(seconds=30)},
)
def platform_healthcheck():
    @task(multiple_outputs=False)
    def check_postgres(conn_id: str) -> dict:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        from paydata.healthcheck import record_postgres_heartbeat
        from paydata.settings import connection

        run_id = get_current_context()["run_id"]
        conn = PostgresHook(postgres_conn_id=conn_id).get_conn()
        try:
            return record_postgres_heartbeat(conn, run_id, require_tls=connection(conn_id).requires_tls)
        finally:
            conn.close()

    @task(multiple_outputs=False)
    def check_mongo() -> dict:
        from airflow.providers.mongo.hooks.mongo import MongoHook

        from paydata.healthcheck import record_mongo_heartbeat
        from paydata.settings import MONGO_CONN_ID, MONGO_DATABASE

        hook = MongoHook(mongo_conn_id=MONGO_CONN_ID)
        client = hook.get_conn()
        database = client[hook.connection.schema or MONGO_DATABASE]
        return record_mongo_heartbeat(database, get_current_context()["run_id"])

    check_postgres.expand(conn_id=POSTGRES_CONN_IDS)
    check_mongo()


platform_healthcheck()
