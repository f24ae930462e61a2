"""
### Reference CDC

Captures the reference database (currencies, countries, FX rates, risk tiers, merchants with
full history) into the warehouse staging layer and MongoDB (merchants).
What leaves the source, and in what form (kept, tokenised, dropped), is `include/cdc/reference.yaml`.

* `slot_health`: fails loudly if the logical slot is lost, or is not the slot the sinks were fed
  from (recreated under the same name: its position is past the engine's confirm ledger); the
  message gives the re-snapshot command, `python -m paydata.cdc resnapshot --source reference`.
  Reports lag in bytes and seconds, retained WAL and WAL status, and emits a heartbeat so an idle
  slot keeps advancing.
* `capture`: one engine run (snapshot when needed, then bounded batches until caught up); the
  XCom is the run report (changes read/applied per sink, start/end LSN, lag in bytes and seconds).

Semantics and operations: `docs/cdc.md`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

SOURCE = "reference"


@dag(
    dag_id="reference_cdc",
    schedule="*/5 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["paydata", "cdc", SOURCE],
    doc_md=__doc__,
    default_args={"owner": "platform", "retries": 2, "retry_delay": pendulum.duration(seconds=30)},
)
def reference_cdc():
    @task(multiple_outputs=False)
    def slot_health() -> dict:
        from paydata.cdc.health import slot_health as check

        return check(SOURCE)

    @task(multiple_outputs=False, outlets=[Asset(f"paydata://warehouse/staging/{SOURCE}"), Asset(f"paydata://mongo/{SOURCE}")])
    def capture() -> dict:
        from paydata.cdc.engine import engine_for_source

        return engine_for_source(SOURCE).run()

    slot_health() >> capture()


reference_cdc()
