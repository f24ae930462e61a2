"""
### Fraud model monitoring

Watches the champion of `fraud_scoring` once a day, and whenever new scores are published
(`marts.fct_fraud_score`'s Asset). `monitor` compares the features of the last day's charges with
a sample of the champion's training window (Evidently, per-input method and threshold), the
champion's score distribution on both, and its PR-AUC on the charges whose fraud labels have
matured (labels as known at the pass's `as_of`: the scoring days before `as_of` minus the maturity
window), overall, per day and per merchant country and risk tier. Thresholds and methods:
`ml/monitoring/monitoring.yaml`.

Results: the Evidently HTML reports in an MLflow run of the experiment `fraud_monitoring`, tagged
with the model version it watched; every number in the warehouse table `ml.monitoring` and the
decision with its evidence in `ml.monitoring_run`.

`request_retrain` publishes `paydata://mlflow/models/fraud_scoring/retrain` (which schedules
`fraud_train`) only when the pass decided to retrain: drift beyond its threshold or a matured
PR-AUC drop beyond the margin, and no request in the cooldown before. Otherwise it is skipped and
no event is published. The challenger still goes through the registry gate. See docs/ml.md.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from paydata import assets
from paydata.dagconfig import DAG_FAILURE, default_args, route

SCORES_ASSET = Asset(assets.marts("fct_fraud_score"))
RETRAIN_ASSET = Asset(assets.retrain_request("fraud_scoring"))


@dag(
    dag_id="fraud_monitor",
    description="Drift and matured performance of the fraud model's champion; requests retraining",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 5 * * *", timezone="UTC"), assets=SCORES_ASSET),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=pendulum.duration(hours=2),
    tags=["paydata", "ml", "monitoring"],
    doc_md=__doc__,
    params={
        "as_of": Param(None, type=["null", "string"],
                       description="ISO time with timezone; default: the latest OLTP commit the marts hold"),
    },
    on_failure_callback=DAG_FAILURE,
    default_args=default_args(execution_timeout=pendulum.duration(hours=1)),
)
def fraud_monitor():
    @task(multiple_outputs=False)
    def monitor(**context) -> dict:
        from ml.monitoring.jobs import run_pass

        return run_pass(context["params"])

    @task(multiple_outputs=False, outlets=[RETRAIN_ASSET])
    def request_retrain(summary: dict, **context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from ml.monitoring.jobs import retrain_event

        extra = retrain_event(summary)
        if extra is None:
            raise AirflowSkipException(f"no retraining requested: {summary.get('decision')}: {summary.get('reason')}")
        context["outlet_events"][RETRAIN_ASSET].extra = extra
        return extra

    request_retrain(monitor())


route(fraud_monitor())
