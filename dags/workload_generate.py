"""
### Synthetic workload

Generates deterministic synthetic load for the platform, one batch per data interval:

1. **seed_reference**: currencies and countries (pycountry/CLDR), synthetic FX rates for the
   interval, risk tiers and merchants; idempotent upserts.
2. **sync_replicas**: upserts OLTP `currency_ref` / `merchant_ref` from the reference database.
3. **generate_traffic**: payments for the interval, COPYed into OLTP in one transaction. The seed
   is derived from the interval, and a loaded batch is recognised by its marker card token, so a
   rerun of the same interval adds nothing.
4. **write_landing**: the interval's JSON-lines landing files (sessions, events, telemetry,
   feedback, app logs, fraud labels; mode 0600), byte-identical on rerun. Publishes the landing
   Asset `paydata://landing/nosql` with the batch key, which schedules `nosql_ingest`.

Params: `payments` per interval (default 5000), `merchants` (default 200) and `base_seed`.
Triggered from the UI, CLI or REST without a logical date, a run generates the day ending when it
was created (`run_after`); with a logical date, the day ending then; backfills, their intervals.
XCom carries counts and paths only. Format and guarantees: `docs/generator.md`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

from paydata.dagconfig import DAG_FAILURE, default_args, route

LANDING = Asset("paydata://landing/nosql")


@dag(
    dag_id="workload_generate",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["paydata", "generator", "workload"],
    doc_md=__doc__,
    description="Deterministic synthetic payments, reference data and landing files, one batch per interval",
    params={
        "payments": Param(5000, type="integer", minimum=1, maximum=10_000_000,
                          description="payments generated for the interval"),
        "merchants": Param(200, type="integer", minimum=1, maximum=100_000,
                           description="merchants seeded in the reference database"),
        "base_seed": Param(0, type="integer", minimum=0,
                           description="mixed into the interval's seed: another value, other traffic"),
    },
    dagrun_timeout=pendulum.duration(hours=2),
    on_failure_callback=DAG_FAILURE,
    default_args=default_args(execution_timeout=pendulum.duration(minutes=45)),
)
def workload_generate():
    def _interval() -> tuple:
        from paydata.generator import run_interval

        context = get_current_context()
        start, end = run_interval(context)
        return start, end, context["params"]

    def _config():
        from paydata.generator import TrafficConfig, interval_seed

        start, end, params = _interval()
        return TrafficConfig(
            payments=int(params["payments"]),
            start=start,
            days=(end - start).total_seconds() / 86400,
            seed=interval_seed(start, end, int(params["base_seed"])),
        )

    @task(multiple_outputs=False)
    def seed_reference() -> dict:
        from paydata import settings
        from paydata.generator.reference import seed_reference as seed

        start, end, params = _interval()
        conn = settings.pg_connect(settings.REFERENCE_CONN_ID)
        try:
            days = max(1, (end.date() - start.date()).days + 1)
            return seed(conn, merchants=int(params["merchants"]), seed=int(params["base_seed"]),
                        fx_start=start.date(), fx_days=days)
        finally:
            conn.close()

    @task(multiple_outputs=False)
    def sync_replicas(_seeded: dict) -> dict:
        from paydata import settings
        from paydata.oltp.reference_sync import sync_reference

        ref = settings.pg_connect(settings.REFERENCE_CONN_ID)
        oltp = settings.pg_connect(settings.OLTP_CONN_ID)
        try:
            return sync_reference(ref, oltp)
        finally:
            ref.close()
            oltp.close()

    @task(multiple_outputs=False)
    def generate_traffic(_synced: dict) -> dict:
        from paydata import settings
        from paydata.generator.loader import load_traffic
        from paydata.generator.reference import load_merchant_profiles

        ref = settings.pg_connect(settings.REFERENCE_CONN_ID)
        oltp = settings.pg_connect(settings.OLTP_CONN_ID)
        try:
            result = load_traffic(oltp, _config(), load_merchant_profiles(ref), progress=False)
            return result.as_dict()
        finally:
            ref.close()
            oltp.close()

    @task(multiple_outputs=False, outlets=[LANDING])
    def write_landing(_loaded: dict) -> dict:
        from paydata import settings
        from paydata.generator.landing import default_landing_dir
        from paydata.generator.landing import write_landing as write
        from paydata.generator.reference import load_chargeable_currencies, load_merchant_profiles
        from paydata.generator.traffic import TrafficGenerator

        ref = settings.pg_connect(settings.REFERENCE_CONN_ID)
        try:
            generator = TrafficGenerator(_config(), load_merchant_profiles(ref), load_chargeable_currencies(ref))
        finally:
            ref.close()
        paths = write(default_landing_dir(), generator)
        # The Asset event names the batch (a reference), never its content.
        get_current_context()["outlet_events"][LANDING].extra = {"batch_key": generator.config.batch_key,
                                                                 "files": len(paths)}
        return {"landing_dir": str(default_landing_dir()), "files": [str(p) for p in paths]}

    write_landing(generate_traffic(sync_replicas(seed_reference())))


route(workload_generate())
