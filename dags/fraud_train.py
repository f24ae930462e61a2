"""
### Fraud model training

Runs when the offline fraud features are updated, when monitoring requests retraining
(`paydata://mlflow/models/fraud_scoring/retrain`, published by `fraud_monitor` on drift or a
matured performance drop), or by hand with params for the window.
`training_set` materialises the labelled charges (labels as known at `label_as_of`, default the
latest OLTP commit the marts hold; `maturity_days`, default 60) of `[window_start, window_end)`
at the feature store's positions; `train` splits it by time (70/15/15), fits the rules baseline and
a calibrated gradient-boosted model, logs both to MLflow with the feature definitions and the data
version, registers `fraud_scoring` (alias `challenger`) and runs the gate that moves `champion`.

A set too small to split (no matured labels yet, or one class only) is reported and skipped, not
failed. XCom carries ids, versions and metrics only. See docs/ml.md.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

from paydata import assets
from paydata.dagconfig import DAG_FAILURE, default_args, route

FEATURES_ASSET = Asset("paydata://warehouse/features/charge_features")
MODEL_ASSET = Asset(assets.model("fraud_scoring"))
RETRAIN_ASSET = Asset(assets.retrain_request("fraud_scoring"))


@dag(
    dag_id="fraud_train",
    schedule=FEATURES_ASSET | RETRAIN_ASSET,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    description="Training set, calibrated model and baseline logged to MLflow, registry gate for champion",
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=pendulum.duration(hours=3),
    tags=["paydata", "ml", "training"],
    doc_md=__doc__,
    params={
        "window_start": Param(None, type=["null", "string"], description="ISO time, inclusive"),
        "window_end": Param(None, type=["null", "string"], description="ISO time, exclusive"),
        "label_as_of": Param(None, type=["null", "string"], description="ISO time; default: from the data"),
        "maturity_days": Param(60, type="integer", minimum=1, description="days until a label matures"),
    },
    on_failure_callback=DAG_FAILURE,
    default_args=default_args(execution_timeout=pendulum.duration(hours=1)),
)
def fraud_train():
    @task(multiple_outputs=False)
    def training_set() -> dict:
        from ml.training.jobs import make_training_set

        return make_training_set(get_current_context()["params"])

    @task(multiple_outputs=False, outlets=[MODEL_ASSET])
    def train(reference: dict) -> dict:
        from ml.training.jobs import train_from_reference

        return train_from_reference(reference)

    train(training_set())


route(fraud_train())
