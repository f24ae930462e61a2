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
* `capture`: one engine run (snapshot when needed, then bounded batches until caught up); the
  XCom is the run report (changes read/applied per sink, dead letters, start/end LSN, lag in
  bytes and seconds).

Semantics and operations: `docs/cdc.md`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

from paydata import assets
from paydata.settings import cdc_sources


def cdc_dag(source: str):
    @dag(
        dag_id=f"{source}_cdc",
        schedule="*/5 * * * *",
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=pendulum.duration(hours=2),
        tags=["paydata", "cdc", source],
        doc_md=__doc__.replace("<source>", source),
        default_args={"owner": "platform", "retries": 2, "retry_delay": pendulum.duration(seconds=30)},
    )
    def capture_dag():
        @task(multiple_outputs=False, execution_timeout=pendulum.duration(minutes=5))
        def slot_health() -> dict:
            from paydata.cdc.health import slot_health as check

            return check(source)

        # A run is bounded by max_batches (and each Mongo call by its socket deadline); a run that
        # is still going after this long is wedged somewhere and is failed, to be retried.
        @task(multiple_outputs=False, execution_timeout=pendulum.duration(hours=1),
              outlets=[Asset(assets.cdc_staging(source)), Asset(assets.cdc_mongo(source))])
        def capture() -> dict:
            from paydata.cdc.engine import engine_for_source

            return engine_for_source(source).run()

        slot_health() >> capture()

    return capture_dag()


for _source in cdc_sources():
    globals()[f"{_source}_cdc"] = cdc_dag(_source)
