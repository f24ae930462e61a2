"""Each DAG's wiring: the tasks, their order and the Assets that connect the stages."""

from __future__ import annotations

import pytest

EXPECTED_DOWNSTREAM = {
    "platform_healthcheck": {"check_postgres": set(), "check_mongo": set()},
    "schema_migrate": {"apply": set()},
    "workload_generate": {
        "seed_reference": {"sync_replicas"},
        "sync_replicas": {"generate_traffic"},
        "generate_traffic": {"write_landing"},
        "write_landing": set(),
    },
    "reference_sync": {"sync": set()},
    "key_rotation": {"rewrap": set()},
    "reference_cdc": {"slot_health": {"capture"}, "capture": set()},
    "oltp_cdc": {"slot_health": {"capture"}, "capture": set()},
    "warehouse_build": {
        "build": {"quality_checks", "reconcile"},
        "quality_checks": {"refresh_aggregates", "label_charges"},
        "refresh_aggregates": {"reconcile"},
        "label_charges": set(),
        "reconcile": set(),
    },
    "fraud_features": {"build_offline": {"refresh_online"}, "refresh_online": set()},
    "fraud_train": {"training_set": {"train"}, "train": set()},
}


@pytest.fixture(scope="module")
def dags():
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags")).dags


def test_every_dag_is_covered_here(dags):
    assert set(dags) == set(EXPECTED_DOWNSTREAM)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DOWNSTREAM))
def test_task_order(dags, dag_id):
    wiring = {task.task_id: set(task.downstream_task_ids) for task in dags[dag_id].tasks}
    assert wiring == EXPECTED_DOWNSTREAM[dag_id]


@pytest.mark.parametrize("source", ["reference", "oltp"])
def test_cdc_publishes_the_assets_the_warehouse_build_waits_for(dags, source):
    capture = dags[f"{source}_cdc"].get_task("capture")
    published = {outlet.uri for outlet in capture.outlets}
    assert published == {f"paydata://warehouse/staging/{source}", f"paydata://mongo/{source}"}

    condition = dags["warehouse_build"].timetable.asset_condition
    assert type(condition).__name__ == "AssetAny", "either source's new staging data must trigger the build"
    awaited = {asset.uri for asset in condition.objects}
    assert f"paydata://warehouse/staging/{source}" in awaited


def test_capture_runs_are_serialised(dags):
    for source in ("reference", "oltp"):
        dag = dags[f"{source}_cdc"]
        assert dag.max_active_runs == 1
        assert dag.catchup is False


def test_features_follow_the_charge_fact_and_training_follows_the_features(dags):
    build = dags["warehouse_build"].get_task("build")
    assert "paydata://warehouse/marts/fct_charge" in {outlet.uri for outlet in build.outlets}
    assert dags["fraud_features"].timetable.asset_condition.uri == "paydata://warehouse/marts/fct_charge"
    assert dags["fraud_train"].timetable.asset_condition.uri == "paydata://warehouse/features/charge_features"
    features = dags["fraud_features"].get_task("build_offline")
    assert {outlet.uri for outlet in features.outlets} == {"paydata://warehouse/features/charge_features"}
    assert set(dags["fraud_train"].params) == {"window_start", "window_end", "label_as_of", "maturity_days"}
