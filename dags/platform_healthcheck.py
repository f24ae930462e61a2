"""
### Platform health check

Connects to every store the platform uses, exactly as the pipelines do (Airflow Connections
`paydata_reference`, `paydata_oltp`, `paydata_warehouse` over TLS 1.3, and every MongoDB user's
connection: `paydata_mongo` (administrator), `paydata_mongo_cdc`, `paydata_mongo_ingest`,
`paydata_mongo_features`, `paydata_mongo_analyst`), and writes a heartbeat keyed by the run id: a
row in `platform_heartbeat` of each database and, as the Mongo administrator, a document in the
`platform_heartbeat` collection. Rerunning a run rewrites its own heartbeats.

Fails when a store is unreachable, when a TCP connection is not encrypted, or when a Mongo
connection does not log in or does not ask for verified TLS. `summary` logs one line per store.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task

from paydata.dagconfig import DAG_FAILURE, default_args, route

POSTGRES_CONN_IDS = ["paydata_reference", "paydata_oltp", "paydata_warehouse", "paydata_keystore"]
MONGO_CONN_IDS = ["paydata_mongo", "paydata_mongo_cdc", "paydata_mongo_ingest", "paydata_mongo_features",
                  "paydata_mongo_analyst", "paydata_mongo_backup"]


@dag(
    dag_id="platform_healthcheck",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    description="Reach every store over TLS through the Airflow Connections and write heartbeats",
    dagrun_timeout=pendulum.duration(minutes=30),
    tags=["paydata", "platform"],
    doc_md=__doc__,
    on_failure_callback=DAG_FAILURE,
    default_args=default_args(execution_timeout=pendulum.duration(minutes=5)),
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
    def check_mongo(conn_id: str) -> dict:
        from airflow.providers.mongo.hooks.mongo import MongoHook

        from paydata.healthcheck import check_mongo_login, record_mongo_heartbeat
        from paydata.settings import MONGO_CONN_ID, MONGO_DATABASE

        with MongoHook(mongo_conn_id=conn_id) as hook:
            client = hook.get_conn()
            report = check_mongo_login(client, hook.connection.extra_dejson)
            if conn_id == MONGO_CONN_ID:  # only the administrator writes the heartbeat
                database = client[hook.connection.schema or MONGO_DATABASE]
                report |= record_mongo_heartbeat(database, get_current_context()["run_id"])
        return report

    @task(multiple_outputs=False)
    def summary(postgres: list[dict], mongo: list[dict]) -> dict:
        import logging

        reports = [*postgres, *mongo]
        for report in reports:
            logging.getLogger(__name__).info("healthy: %s", report)
        return {"stores": len(reports)}

    summary(check_postgres.expand(conn_id=POSTGRES_CONN_IDS), check_mongo.expand(conn_id=MONGO_CONN_IDS))


route(platform_healthcheck())
