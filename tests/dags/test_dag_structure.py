"""Each DAG's wiring: the tasks, their order and the Assets that connect the stages."""

from __future__ import annotations

import pytest

EXPECTED_DOWNSTREAM = {
    "platform_healthcheck": {"check_postgres": {"summary"}, "check_mongo": {"summary"}, "summary": set()},
    "schema_migrate": {"apply_keystore": {"move_legacy_keys"}, "move_legacy_keys": {"apply"},
                       "apply": {"apply_warehouse"}, "apply_warehouse": set(), "apply_mongo_definitions": set()},
    "backup": {"take": {"restore_drill"}, "restore_drill": {"expire"}, "expire": set()},
    "erasure_window": {"close_window": {"erasure_complete"}, "erasure_complete": set(), "audit_verify": set()},
    "workload_generate": {
        "seed_reference": {"sync_replicas"},
        "sync_replicas": {"generate_traffic"},
        "generate_traffic": {"write_landing"},
        "write_landing": set(),
    },
    "nosql_ingest": {
        "prepare": {"ingest"},
        "ingest": {"reconcile"},
        "reconcile": {"clean_landing"},
        "clean_landing": set(),
    },
    "reference_sync": {"sync": set()},
    "key_rotation": {"rewrap": {"summary"}, "summary": set()},
    **{
        f"{source}_cdc": {
            "slot_health": {"capture"},
            "capture": {"publish_staging", "publish_mongo", "lag_check"},
            "publish_staging": set(),
            "publish_mongo": set(),
            "lag_check": set(),
        }
        for source in ("reference", "oltp")
    },
    "warehouse_build": {
        "build": {"quality_checks", "reconcile", "freshness_check"},
        "freshness_check": set(),
        "quality_checks": {"refresh_aggregates", "label_charges"},
        "refresh_aggregates": {"reconcile"},
        "label_charges": set(),
        "reconcile": set(),
    },
    "fraud_features": {"build_offline": {"refresh_online"}, "refresh_online": set()},
    "fraud_train": {"training_set": {"train"}, "train": set()},
    "fraud_monitor": {"monitor": {"request_retrain"}, "request_retrain": set()},
    "fraud_score": {"score_charges": set()},
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
    dag = dags[f"{source}_cdc"]
    published = {outlet.uri for task in dag.tasks for outlet in task.outlets}
    assert published == {f"paydata://warehouse/staging/{source}", f"paydata://mongo/{source}"}
    # Only the publishing tasks carry the Assets: they skip (no event) when the run applied nothing.
    assert [o.uri for o in dag.get_task("publish_staging").outlets] == [f"paydata://warehouse/staging/{source}"]
    assert [o.uri for o in dag.get_task("publish_mongo").outlets] == [f"paydata://mongo/{source}"]
    assert not dag.get_task("capture").outlets

    condition = dags["warehouse_build"].timetable.asset_condition
    assert type(condition).__name__ == "AssetAny", "either source's new staging data must trigger the build"
    awaited = {asset.uri for asset in condition.objects}
    assert f"paydata://warehouse/staging/{source}" in awaited


def test_capture_runs_are_serialised(dags):
    for source in ("reference", "oltp"):
        dag = dags[f"{source}_cdc"]
        assert dag.max_active_runs == 1
        assert dag.catchup is False


def test_a_third_source_is_a_manifest_away(tmp_path):
    """A manifest dropped into the manifest folder becomes a CDC DAG publishing its own Assets."""
    import os
    import shutil
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    for source in ("reference", "oltp"):
        shutil.copy(repo / "include" / "cdc" / f"{source}.yaml", tmp_path)
    (tmp_path / "payouts.yaml").write_text(textwrap.dedent("""
        source: payouts
        slot: paydata_payouts
        publication: paydata_payouts
        tables:
          bank_transfer:
            key: [transfer_id]
            sinks: [warehouse]
            columns: {transfer_id: keep, iban: tokenise:iban, amount: keep}
    """))
    script = textwrap.dedent(f"""
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(repo / "dags")!r})
        assert not bag.import_errors, bag.import_errors
        cdc = sorted(dag_id for dag_id in bag.dags if dag_id.endswith("_cdc"))
        outlets = sorted(o.uri for t in bag.dags["payouts_cdc"].tasks for o in t.outlets)
        print(cdc, outlets)
    """)
    env = {**os.environ, "PAYDATA_CDC_MANIFEST_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == (
        "['oltp_cdc', 'payouts_cdc', 'reference_cdc'] ['paydata://mongo/payouts', 'paydata://warehouse/staging/payouts']"
    )


def test_landing_asset_schedules_the_ingest(dags):
    write_landing = dags["workload_generate"].get_task("write_landing")
    assert {outlet.uri for outlet in write_landing.outlets} == {"paydata://landing/nosql"}
    condition = dags["nosql_ingest"].timetable.asset_condition
    assert type(condition).__name__ == "Asset" and condition.uri == "paydata://landing/nosql"
    ingest = dags["nosql_ingest"]
    assert ingest.max_active_runs == 1 and ingest.catchup is False
    assert set(ingest.params) == {"batch_key", "retention_hours"}


def test_features_follow_the_charge_fact_and_training_follows_the_features(dags):
    build = dags["warehouse_build"].get_task("build")
    assert "paydata://warehouse/marts/fct_charge" in {outlet.uri for outlet in build.outlets}
    assert dags["fraud_features"].timetable.asset_condition.uri == "paydata://warehouse/marts/fct_charge"
    condition = dags["fraud_train"].timetable.asset_condition
    assert type(condition).__name__ == "AssetAny"
    assert {asset.uri for asset in condition.objects} == {"paydata://warehouse/features/charge_features",
                                                          "paydata://mlflow/models/fraud_scoring/retrain"}
    features = dags["fraud_features"].get_task("build_offline")
    assert {outlet.uri for outlet in features.outlets} == {"paydata://warehouse/features/charge_features"}
    assert set(dags["fraud_train"].params) == {"window_start", "window_end", "label_as_of", "maturity_days"}


def test_warehouse_build_also_runs_daily_for_the_full_quality_scan(dags):
    timetable = dags["warehouse_build"].timetable
    assert type(timetable).__name__ == "AssetOrTimeSchedule"
    assert timetable.timetable.expression == "30 2 * * *"


def test_monitoring_runs_daily_and_on_new_scores_and_its_retrain_request_schedules_training(dags):
    monitor = dags["fraud_monitor"]
    timetable = monitor.timetable
    assert type(timetable).__name__ == "AssetOrTimeSchedule"
    assert timetable.asset_condition.uri == "paydata://warehouse/marts/fct_fraud_score"
    assert monitor.max_active_runs == 1 and monitor.catchup is False
    # only the publishing task carries the retrain Asset (it skips when no retraining was decided)
    assert not monitor.get_task("monitor").outlets
    published = [outlet.uri for outlet in monitor.get_task("request_retrain").outlets]
    assert published == ["paydata://mlflow/models/fraud_scoring/retrain"]
    awaited = {asset.uri for asset in dags["fraud_train"].timetable.asset_condition.objects}
    assert set(published) <= awaited
    assert set(monitor.params) == {"as_of"}


def test_fraud_scores_follow_the_charge_fact_the_warehouse_build_publishes(dags):
    published = {outlet.uri for outlet in dags["warehouse_build"].get_task("build").outlets}
    condition = dags["fraud_score"].timetable.asset_condition
    awaited = {asset.uri for asset in getattr(condition, "objects", [condition])}
    assert "paydata://warehouse/marts/fct_charge" in published
    assert awaited == {"paydata://warehouse/marts/fct_charge"}
    assert [o.uri for o in dags["fraud_score"].get_task("score_charges").outlets] == [
        "paydata://warehouse/marts/fct_fraud_score"]
