"""
### Change data capture: one DAG per source manifest

Every `include/cdc/<source>.yaml` becomes a DAG `<source>_cdc` (every 5 minutes) that captures
that source database into the warehouse staging layer and MongoDB. What leaves the source, and in
what form (kept, tokenised, dropped), and what a change the policy cannot capture does
(`on_error`), is the manifest; the connections are `paydata_cdc_<source>` (capture role) and
`paydata_<source>` (the tables' owner). Adding a source is a manifest and those two connections.

* `slot_health`: fails loudly if the logical slot is lost, or is not the slot the sinks were fed
  from (recreated under the same name: its position is past the engine's confirm ledger); the
  message gives the re-snapshot command, `python -m paydata.cdc resnapshot --source <source>`.
  Reports lag in bytes and seconds, retained WAL and WAL status, and emits a heartbeat so an idle
  slot keeps advancing.
* `capture`: one engine run (snapshot when needed, then bounded batches until caught up); logs
  one line per batch and one summary; the XCom is the run report (changes read/applied per sink
  and table, dead letters, start/end LSN, lag in bytes and seconds).
* `publish_staging`, `publish_mongo`: publish the sink's Asset event only when the run applied
  changes to it, with the facts as event metadata (changes, LSN range, tables); a run that applied
  nothing skips them, so nothing downstream runs for nothing.
* `lag_check`: fails (and alerts) when the slot lags more than `max_lag_bytes` of WAL or
  `max_lag_seconds` behind the source (run params, defaults in `paydata.alerts`).

Triggered by its schedule, from the UI/CLI/REST (with or without a logical date: a run captures
whatever is committed, never an interval).

Semantics and operations: `docs/cdc.md`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, task

from paydata import alerts, assets
from paydata.dagconfig import DAG_FAILURE, default_args, route
from paydata.settings import cdc_sources


def cdc_dag(source: str):
    staging = Asset(assets.cdc_staging(source))
    mongo = Asset(assets.cdc_mongo(source))

    @dag(
        dag_id=f"{source}_cdc",
        description=f"Capture the {source} database (logical decoding) into warehouse staging and MongoDB",
        schedule="*/5 * * * *",
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=pendulum.duration(hours=2),
        tags=["paydata", "cdc", source],
        doc_md=__doc__.replace("<source>", source),
        params={
            "max_lag_bytes": Param(alerts.MAX_SLOT_LAG_BYTES, type="integer", minimum=0,
                                   description="lag_check fails when the slot still has more WAL than this to deliver"),
            "max_lag_seconds": Param(alerts.MAX_SLOT_LAG_SECONDS, type="integer", minimum=0,
                                     description="lag_check fails when the sinks confirmed nothing newer than this"),
        },
        on_failure_callback=DAG_FAILURE,
        default_args=default_args(execution_timeout=pendulum.duration(minutes=5)),
    )
    def capture_dag():
        @task(multiple_outputs=False)
        def slot_health() -> dict:
            from paydata.cdc.health import slot_health as check

            return check(source)

        # A run is bounded by max_batches (and each Mongo call by its socket deadline); a run that
        # is still going after this long is wedged somewhere and is failed, to be retried.
        @task(multiple_outputs=False, execution_timeout=pendulum.duration(hours=1))
        def capture() -> dict:
            from paydata.cdc.engine import engine_for_source

            return engine_for_source(source).run()

        def publisher(sink: str, asset: Asset, task_id: str):
            @task(multiple_outputs=False, task_id=task_id, outlets=[asset])
            def publish(report: dict, **context) -> dict:
                from airflow.sdk.exceptions import AirflowSkipException

                extra = assets.capture_event_extra(report, sink)
                if extra is None:
                    raise AirflowSkipException(f"the run applied no change to {sink}: no Asset event")
                context["outlet_events"][asset].extra = extra
                return extra

            return publish

        @task(multiple_outputs=False)
        def lag_check(report: dict, **context) -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            params = context["params"]
            problems = alerts.lag_problems(report, int(params["max_lag_bytes"]), int(params["max_lag_seconds"]))
            if problems:
                raise AirflowFailException("; ".join(problems))
            return {"lag_bytes": report.get("lag_bytes"), "lag_seconds": report.get("lag_seconds")}

        report = capture()
        slot_health() >> report
        publisher("warehouse", staging, "publish_staging")(report)
        publisher("mongo", mongo, "publish_mongo")(report)
        lag_check(report)

    return route(capture_dag())


for _source in cdc_sources():
    globals()[f"{_source}_cdc"] = cdc_dag(_source)
