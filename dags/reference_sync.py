"""
### Reference -> OLTP sync

Keeps OLTP's local replicas of reference data (`currency_ref`, `merchant_ref`) in step with the
reference database. OLTP foreign keys point at these replicas so payments never depend on a
cross-database call; this job is how they stay consistent (see `docs/operations.md`).

Reads every chargeable currency and every merchant from one snapshot, COPYs them into temporary
tables and upserts (`INSERT ... ON CONFLICT DO UPDATE ... WHERE IS DISTINCT FROM`): only rows
that differ are rewritten, nothing is ever deleted (a closed merchant stays, status `closed`).
Idempotent: a rerun with no reference change reports 0 inserted and 0 updated.

Runs daily and on demand (trigger it after changing merchants or currencies). XCom carries the
counts per replica: read / inserted / updated / unchanged (and skipped merchants whose currency is
not chargeable).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from paydata.dagconfig import DAG_FAILURE, default_args, route


@dag(
    dag_id="reference_sync",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    description="Upsert OLTP's replicas of currencies and merchants from the reference database",
    dagrun_timeout=pendulum.duration(hours=1),
    tags=["paydata", "oltp", "reference"],
    doc_md=__doc__,
    on_failure_callback=DAG_FAILURE,
    default_args=default_args(retry_delay=pendulum.duration(minutes=1), execution_timeout=pendulum.duration(minutes=30)),
)
def reference_sync():
    @task(multiple_outputs=False)
    def sync() -> dict:
        from paydata.oltp.reference_sync import sync_reference
        from paydata.settings import OLTP_CONN_ID, REFERENCE_CONN_ID, pg_connect

        reference_conn = pg_connect(REFERENCE_CONN_ID)
        try:
            oltp_conn = pg_connect(OLTP_CONN_ID)
            try:
                return sync_reference(reference_conn, oltp_conn)
            finally:
                oltp_conn.close()
        finally:
            reference_conn.close()

    sync()


route(reference_sync())
