"""
### NoSQL landing ingest

Loads the JSON-lines landing files that `workload_generate` publishes (sessions, events,
telemetry, feedback, application logs) into MongoDB, scheduled on the landing Asset, not on a clock.

1. **prepare**: collection validators and indexes from `include/nosql` (idempotent).
2. **ingest**: each landing file once. Every line is validated against its record schema
   (`include/nosql/records.json`), made safe (identifiers become the CDC tokens; free text loses
   emails, phones, card numbers, IP addresses and known customers' names) and written, counted as a
   duplicate, or quarantined with a reason code (never the raw line). A file ledger
   (`ingest_files`: name, size, SHA-256, counts) makes reruns and re-delivered files load nothing;
   a file whose name was seen with another checksum is refused and fails the task after the
   other files are in.
3. **reconcile**: per file, lines = loaded + quarantined + duplicates, or the task fails.
4. **clean_landing**: removes landing files ingested at least `retention_hours` ago.

Triggered by the Asset, a run ingests the batches named by the triggering events; run by hand
(`airflow dags test nosql_ingest`, or trigger with `{"batch_key": "<key>"}`), it ingests one
batch or every landing file not yet in the ledger. XCom carries counts and file names only.
Document model and guarantees: `docs/mongo.md`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

from paydata.dagconfig import DAG_FAILURE, default_args, route

LANDING = Asset("paydata://landing/nosql")
INGESTED = Asset("paydata://mongo/landing")


@dag(
    dag_id="nosql_ingest",
    schedule=LANDING,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["paydata", "nosql", "mongo", "landing"],
    description="Validate, tokenise and scrub the landing files into MongoDB; quarantine bad lines; reconcile",
    dagrun_timeout=pendulum.duration(hours=2),
    doc_md=__doc__,
    params={
        "batch_key": Param("", type="string", description="ingest only this batch's landing files (empty: every file not yet ingested)"),
        "retention_hours": Param(24, type="number", minimum=0, description="keep ingested landing files this long before removing them"),
    },
    on_failure_callback=DAG_FAILURE,
    default_args=default_args(execution_timeout=pendulum.duration(hours=1)),
)
def nosql_ingest():
    @task(multiple_outputs=False)
    def prepare() -> dict:
        from paydata.nosql import job

        return {"changes": len(job.prepare())}

    @task(multiple_outputs=False, outlets=[INGESTED])
    def ingest(_prepared: dict) -> dict:
        from paydata.generator.landing import default_landing_dir
        from paydata.nosql import job

        context = get_current_context()
        batch_keys = [context["params"]["batch_key"]] if context["params"]["batch_key"] else None
        if batch_keys is None:
            triggered = [event.extra.get("batch_key") for events in context["triggering_asset_events"].values()
                         for event in events]
            batch_keys = sorted({key for key in triggered if key}) or None
        return job.run(default_landing_dir(), batch_keys)

    @task(multiple_outputs=False)
    def reconcile(report: dict) -> dict:
        from paydata.nosql import job

        return job.reconcile(report["file_names"])

    @task(multiple_outputs=False)
    def clean_landing(_reconciled: dict) -> dict:
        from paydata.generator.landing import default_landing_dir
        from paydata.nosql import job

        context = get_current_context()
        return job.clean_landing(default_landing_dir(), float(context["params"]["retention_hours"]),
                                 context["data_interval_end"] or pendulum.now("UTC"))

    clean_landing(reconcile(ingest(prepare())))


route(nosql_ingest())
