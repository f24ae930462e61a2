"""
### Fraud scores for the warehouse

Runs when the warehouse build publishes the charge fact: `score_charges` sends the charges loaded
since the last run (charge-fact positions above the recorded watermark) to the fraud scoring API's
batch endpoint and upserts each answer into `marts.fct_fraud_score` (charge, model name and version,
score, band, reasons, feature misses, scored_at) on (charge, model version), in one transaction with
the new watermark. Param `from_lsn` rescores from an earlier position with the current champion
(e.g. `-1`: every charge still within the horizon), adding rows for that version beside the
earlier versions' rows.

Only charges younger than the online horizon (the shortest TTL of the feature definitions, one
hour) are sent: an older charge's online features describe other windows than the one before it.
They are skipped and counted (`skipped_too_old` in the result); monitoring scores them from their
point-in-time features.

The API is reached through the connection `paydata_fraud_scorer` (its API key as the password).
Scores are the API's answers at scoring time, with the online features as they are then. XCom
carries counts and positions only. See docs/ml.md, *Serving*.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

from paydata import assets
from paydata.dagconfig import DAG_FAILURE, default_args, route

CHARGE_ASSET = Asset(assets.marts("fct_charge"))
SCORE_ASSET = Asset(assets.marts("fct_fraud_score"))


@dag(
    dag_id="fraud_score",
    description="Charge facts scored by the fraud scoring API into marts.fct_fraud_score",
    schedule=CHARGE_ASSET,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=pendulum.duration(hours=2),
    tags=["paydata", "ml", "scoring"],
    doc_md=__doc__,
    params={"from_lsn": Param(None, type=["null", "integer"],
                              description="rescore charges above this charge-fact position (default: the watermark)")},
    on_failure_callback=DAG_FAILURE,
    default_args=default_args(execution_timeout=pendulum.duration(hours=1)),
)
def fraud_score():
    @task(multiple_outputs=False, outlets=[SCORE_ASSET])
    def score_charges() -> dict:
        from ml.scoring.jobs import score_charges as score

        return score(get_current_context()["params"])

    score_charges()


route(fraud_score())
