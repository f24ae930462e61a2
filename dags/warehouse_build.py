"""
### Warehouse marts build

Builds the OLAP marts (`marts.fct_balance_transaction`, `marts.fct_charge` and their dimensions)
incrementally from the CDC staging layer whenever either staging asset is updated: each run processes exactly the staging
rows above the watermark the previous run recorded, in one transaction with the new watermark.

Tasks: `build` (incremental, stops naming bad staged rows and loads nothing partial) ->
`quality_checks` (keys, foreign keys, amount signs, charge status rules over the whole marts) ->
`refresh_aggregates` (materialized views, `REFRESH ... CONCURRENTLY`) -> `reconcile` (daily counts and
sums against the OLTP ledger for the processed window); after the checks, `label_charges` publishes
the fraud labels (`marts.fct_charge_label`) as known at the latest OLTP commit the marts were built
from (60-day maturity window). XCom carries counts, LSNs and the window only.

Rebuild from scratch with `python -m paydata.warehouse rebuild`; see docs/warehouse.md.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

from paydata import assets

# The marts are built from these two sources' staging tables (paydata.warehouse.build.SOURCES).
STAGING_REFERENCE = Asset(assets.cdc_staging("reference"))
STAGING_OLTP = Asset(assets.cdc_staging("oltp"))
FACT_ASSET = Asset(assets.marts("fct_balance_transaction"))
CHARGE_ASSET = Asset(assets.marts("fct_charge"))
LABEL_ASSET = Asset(assets.marts("fct_charge_label"))
AGGREGATES_ASSET = Asset(assets.marts("aggregates"))


@dag(
    dag_id="warehouse_build",
    schedule=STAGING_REFERENCE | STAGING_OLTP,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["paydata", "warehouse", "marts"],
    doc_md=__doc__,
    default_args={"owner": "platform", "retries": 2, "retry_delay": pendulum.duration(seconds=30)},
)
def warehouse_build():
    @task(multiple_outputs=False, outlets=[FACT_ASSET, CHARGE_ASSET])
    def build() -> dict:
        from paydata.settings import WAREHOUSE_CONN_ID, pg_connect
        from paydata.warehouse import build as build_marts

        conn = pg_connect(WAREHOUSE_CONN_ID)
        try:
            report = build_marts(conn)
        finally:
            conn.close()
        return {
            "up_to_date": report["up_to_date"],
            "sources": report["sources"],
            "rows": report["rows"],
            "fact_window": report["fact_window"],
        }

    @task(multiple_outputs=False)
    def quality_checks(report: dict) -> dict:
        from paydata.settings import WAREHOUSE_CONN_ID, pg_connect
        from paydata.warehouse import check_quality

        conn = pg_connect(WAREHOUSE_CONN_ID)
        try:
            return check_quality(conn)
        finally:
            conn.close()

    @task(multiple_outputs=False, outlets=[AGGREGATES_ASSET])
    def refresh_aggregates(checked: dict) -> dict:
        from paydata.settings import WAREHOUSE_CONN_ID, pg_connect
        from paydata.warehouse import refresh_aggregates as refresh

        conn = pg_connect(WAREHOUSE_CONN_ID)
        try:
            return {"refreshed": len(refresh(conn))}
        finally:
            conn.close()

    @task(multiple_outputs=False, outlets=[LABEL_ASSET])
    def label_charges(checked: dict) -> dict:
        from paydata.settings import WAREHOUSE_CONN_ID, pg_connect
        from paydata.warehouse.labels import default_as_of
        from paydata.warehouse.labels import label_charges as publish_labels

        conn = pg_connect(WAREHOUSE_CONN_ID)
        try:
            # as_of from the data (the latest OLTP commit built), never the clock: reruns agree
            as_of = default_as_of(conn)
            return publish_labels(conn, as_of) if as_of else {"as_of": None, "charges": 0}
        finally:
            conn.close()

    @task(multiple_outputs=False)
    def reconcile(report: dict, refreshed: dict) -> dict:
        from paydata.settings import OLTP_CONN_ID, WAREHOUSE_CONN_ID, pg_connect
        from paydata.warehouse import reconcile as reconcile_ledger

        window = report["fact_window"]
        if not window:
            return {"days": 0, "groups": 0}
        warehouse_conn = pg_connect(WAREHOUSE_CONN_ID)
        oltp_conn = pg_connect(OLTP_CONN_ID)
        try:
            return reconcile_ledger(warehouse_conn, oltp_conn, **window)
        finally:
            warehouse_conn.close()
            oltp_conn.close()

    built = build()
    checked = quality_checks(built)
    refreshed = refresh_aggregates(checked)
    label_charges(checked)
    reconcile(built, refreshed)


warehouse_build()
