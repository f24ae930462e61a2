"""Each DAG's wiring: the tasks, their order and the Assets that connect the stages."""

from __future__ import annotations

import pytest

EXPECTED_DOWNSTREAM = {
    "platform_healthcheck": {"check_postgres": {"summary"}, "check_mongo": {"summary"}, "summary": set()},
    "schema_migrate": {"apply": set(), "apply_mongo_definitions": set()},
    "workload_generate": {
        "seed_reference": {"sync_replicas"},
        "sync_replicas": {"generate_traffic"},
        "generate_traffic": {"write_landing"},
        "write_landing": set(),
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


def test_warehouse_build_also_runs_daily_for_the_full_quality_scan(dags):
    timetable = dags["warehouse_build"].timetable
    assert type(timetable).__name__ == "AssetOrTimeSchedule"
    assert timetable.timetable.expression == "30 2 * * *"
