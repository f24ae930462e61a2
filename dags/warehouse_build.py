"""
### Warehouse marts build

Builds the OLAP marts (`marts.fct_balance_transaction`, `marts.fct_charge` and their dimensions)
incrementally from the CDC staging layer whenever a capture run published a staging Asset event
(only runs that applied changes do), and once a day at 02:30 UTC: each run processes exactly the
staging rows above the watermark the previous run recorded, in one transaction with the new
watermark. The run's triggering events (source, changes, LSN range, tables) are in the build's XCom
and log.

Tasks: `build` (incremental, stops naming bad staged rows and loads nothing partial; checks keys,
foreign keys, amount signs and charge status rules on the rows of the window it built) ->
`quality_checks` (the same checks over the whole marts on the daily run, or when the run param
`full_quality_scan` is set; otherwise it reports the window the build checked) ->
`refresh_aggregates` (materialized views, `REFRESH ... CONCURRENTLY`) -> `reconcile` (daily counts and
sums against the OLTP ledger for the processed window); after the checks, `label_charges` publishes
the fraud labels (`marts.fct_charge_label`) as known at the latest OLTP commit the marts were built
from (60-day maturity window); `freshness_check` fails (and alerts) when a fact reflects no OLTP commit
newer than `max_marts_age_hours`. XCom carries counts, LSNs and the window only.

Every task connects as the warehouse loader (`paydata_warehouse_loader`: no DDL; the marts are
defined by the migrate step, `schema_migrate` or `python -m paydata.migrations apply`), and
`reconcile` reads the OLTP ledger as the application role, never as an owner.

Rebuild from scratch with `python -m paydata.warehouse rebuild`; see docs/warehouse.md.
"""

from __future__ import annotations

import logging

import pendulum
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from paydata import alerts, assets
from paydata.dagconfig import DAG_FAILURE, default_args, route

log = logging.getLogger(__name__)

# The marts are built from these two sources' staging tables (paydata.warehouse.build.SOURCES).
STAGING_REFERENCE = Asset(assets.cdc_staging("reference"))
STAGING_OLTP = Asset(assets.cdc_staging("oltp"))
FACT_ASSET = Asset(assets.marts("fct_balance_transaction"))
CHARGE_ASSET = Asset(assets.marts("fct_charge"))
LABEL_ASSET = Asset(assets.marts("fct_charge_label"))
AGGREGATES_ASSET = Asset(assets.marts("aggregates"))


@dag(
    dag_id="warehouse_build",
    description="Incremental marts from CDC staging: facts, SCD2 dimensions, checks, aggregates, labels",
    # New staging data from either source, and a daily run that scans the whole marts.
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("30 2 * * *", timezone="UTC"),
                                 assets=STAGING_REFERENCE | STAGING_OLTP),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=pendulum.duration(hours=3),
    tags=["paydata", "warehouse", "marts"],
    doc_md=__doc__,
    params={
        "full_quality_scan": Param(False, type="boolean",
                                   description="check the whole marts, not only the window this run built"),
        "max_marts_age_hours": Param(alerts.MAX_MARTS_AGE_HOURS, type="number", minimum=0,
                                     description="freshness_check fails when a fact reflects no newer OLTP commit"),
    },
    on_failure_callback=DAG_FAILURE,
    default_args=default_args(execution_timeout=pendulum.duration(hours=1)),
)
def warehouse_build():
    @task(multiple_outputs=False, outlets=[FACT_ASSET, CHARGE_ASSET])
    def build(**context) -> dict:
        from paydata.settings import WAREHOUSE_LOADER_CONN_ID, pg_connect
        from paydata.warehouse import build as build_marts
        from paydata.warehouse.build import summarise_build, triggering_events

        events = triggering_events(context.get("triggering_asset_events") or {})
        conn = pg_connect(WAREHOUSE_LOADER_CONN_ID)
        try:
            report = build_marts(conn)
        finally:
            conn.close()
        summary = summarise_build(report, events)
        log.info("%s", summary["text"])
        return summary

    @task(multiple_outputs=False)
    def quality_checks(report: dict, **context) -> dict:
        from paydata.settings import WAREHOUSE_LOADER_CONN_ID, pg_connect
        from paydata.warehouse import check_quality

        full = context["dag_run"].run_type == "scheduled" or bool(context["params"]["full_quality_scan"])
        if not full:  # the build checked its window inside its own transaction
            return {"scope": "window", "facts_checked": report["rows"].get("affected_facts", 0),
                    "charges_checked": report["rows"].get("affected_charges", 0)}
        conn = pg_connect(WAREHOUSE_LOADER_CONN_ID)
        try:
            return {"scope": "full", **check_quality(conn)}
        finally:
            conn.close()

    @task(multiple_outputs=False)
    def freshness_check(report: dict, **context) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from paydata.settings import WAREHOUSE_LOADER_CONN_ID, pg_connect
        from paydata.warehouse.schema import freshness

        conn = pg_connect(WAREHOUSE_LOADER_CONN_ID)
        try:
            rows = [row for row in freshness(conn) if row["table_name"] in alerts.FRESHNESS_TABLES]
        finally:
            conn.close()
        max_age = pendulum.duration(hours=float(context["params"]["max_marts_age_hours"]))
        problems = alerts.freshness_problems(rows, pendulum.now("UTC"), max_age)
        if problems:
            raise AirflowFailException("; ".join(problems))
        return {row["table_name"]: str(row["source_commit_at"]) for row in rows}

    @task(multiple_outputs=False, outlets=[AGGREGATES_ASSET])
    def refresh_aggregates(checked: dict) -> dict:
        from paydata.settings import WAREHOUSE_LOADER_CONN_ID, pg_connect
        from paydata.warehouse import refresh_aggregates as refresh

        conn = pg_connect(WAREHOUSE_LOADER_CONN_ID)
        try:
            return {"refreshed": len(refresh(conn))}
        finally:
            conn.close()

    @task(multiple_outputs=False, outlets=[LABEL_ASSET])
    def label_charges(checked: dict) -> dict:
        from paydata.settings import WAREHOUSE_LOADER_CONN_ID, pg_connect
        from paydata.warehouse.labels import default_as_of
        from paydata.warehouse.labels import label_charges as publish_labels

        conn = pg_connect(WAREHOUSE_LOADER_CONN_ID)
        try:
            # as_of from the data (the latest OLTP commit built), never the clock: reruns agree
            as_of = default_as_of(conn)
            return publish_labels(conn, as_of) if as_of else {"as_of": None, "charges": 0}
        finally:
            conn.close()

    @task(multiple_outputs=False)
    def reconcile(report: dict, refreshed: dict) -> dict:
        from paydata.settings import OLTP_APP_CONN_ID, WAREHOUSE_LOADER_CONN_ID, pg_connect
        from paydata.warehouse import reconcile as reconcile_ledger

        window = report["fact_window"]
        if not window:
            return {"days": 0, "groups": 0}
        warehouse_conn = pg_connect(WAREHOUSE_LOADER_CONN_ID)
        oltp_conn = pg_connect(OLTP_APP_CONN_ID)  # reads the ledger; no owner
        try:
            return reconcile_ledger(warehouse_conn, oltp_conn, **window)
        finally:
            warehouse_conn.close()
            oltp_conn.close()

    built = build()
    freshness_check(built)
    checked = quality_checks(built)
    refreshed = refresh_aggregates(checked)
    label_charges(checked)
    reconcile(built, refreshed)


route(warehouse_build())
