"""
### Fraud features

Brings the point-in-time fraud features up to the marts whenever the warehouse build publishes
the charge fact: `build_offline` appends the charges and disputes loaded since the last run to the
event ledgers (as first seen) and materialises each new charge's features, computed from what
was known strictly before it (`features.charge_features_v1`, versioned by the marts' positions;
the LATERAL query); `refresh_online` then recomputes the online documents (Mongo `features`) of
the entities those new events touched, with the same query.

Both tasks connect as the `ml` role (`paydata_warehouse_ml`: reads the marts and two staging
mirrors, writes the features schema's data, no DDL; the feature tables are created by the migrate
step). Feature definitions: `ml/features/definitions/fraud_charge.yaml`; see docs/ml.md. XCom
carries positions and counts only.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

from paydata.dagconfig import DAG_FAILURE, default_args, route

CHARGE_ASSET = Asset("paydata://warehouse/marts/fct_charge")
FEATURES_ASSET = Asset("paydata://warehouse/features/charge_features")
ONLINE_ASSET = Asset("paydata://mongo/features")


@dag(
    dag_id="fraud_features",
    schedule=CHARGE_ASSET,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    description="Point-in-time fraud features: offline store in the warehouse, online documents in Mongo",
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=pendulum.duration(hours=2),
    tags=["paydata", "ml", "features"],
    doc_md=__doc__,
    on_failure_callback=DAG_FAILURE,
    default_args=default_args(execution_timeout=pendulum.duration(hours=1)),
)
def fraud_features():
    @task(multiple_outputs=False, outlets=[FEATURES_ASSET])
    def build_offline() -> dict:
        from ml.features.definitions import load_definitions
        from ml.features.offline import build_features
        from paydata import settings

        conn = settings.pg_connect(settings.WAREHOUSE_ML_CONN_ID)
        sessions = settings.mongo_database(settings.MONGO_FEATURES_CONN_ID)
        try:
            return build_features(conn, load_definitions(), sessions_db=sessions)
        finally:
            conn.close()
            sessions.client.close()

    @task(multiple_outputs=False, outlets=[ONLINE_ASSET])
    def refresh_online(built: dict) -> dict:
        from ml.features.definitions import load_definitions
        from ml.features.online import refresh_online as refresh
        from paydata import settings

        conn = settings.pg_connect(settings.WAREHOUSE_ML_CONN_ID)
        database = settings.mongo_database(settings.MONGO_FEATURES_CONN_ID)
        try:
            report = refresh(conn, load_definitions(), database)
        finally:
            conn.close()
            database.client.close()
        return {key: report[key] for key in ("from_lsn", "to_lsn", "as_of", "documents")}

    refresh_online(build_offline())


route(fraud_features())
