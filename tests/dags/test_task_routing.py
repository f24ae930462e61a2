"""Which worker runs each task: owner-level tasks on the `owner` queue, everything else on the default.

``paydata.dagconfig.TASK_ACCESS`` declares what every task reaches; ``route`` applies it. These tests
check the declaration covers every task of every parsed DAG, that each task's queue (and, for the
KubernetesExecutor, its pod template) follows from it, and that the declaration matches the
connections the DAG code names where the DAG names them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from paydata import dagconfig, settings

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag.dags


def test_every_task_of_every_dag_declares_what_it_reaches(dags):
    for dag_id, dag in dags.items():
        access = dagconfig.task_access(dag_id)
        assert set(access) == set(dag.task_ids), f"{dag_id}: TASK_ACCESS and the DAG's tasks differ"
        for task_id, items in access.items():
            unknown = [item for item in items
                       if item not in dagconfig.OWNER_ACCESS and not item.startswith("paydata_")]
            assert not unknown, f"{dag_id}.{task_id}: {unknown} is neither a connection id nor an owner resource"
    declared = {key for key in dagconfig.TASK_ACCESS if "{" not in key}
    assert declared <= set(dags), f"TASK_ACCESS names DAGs that do not exist: {declared - set(dags)}"


def test_owner_tasks_are_on_the_owner_queue_and_the_rest_on_the_default_queue(dags):
    from airflow.configuration import conf

    default_queue = conf.get("operators", "default_queue")
    on_owner = set()
    for dag_id, dag in dags.items():
        access = dagconfig.task_access(dag_id)
        for task in dag.tasks:
            needs_owner = bool(dagconfig.OWNER_ACCESS.intersection(access[task.task_id]))
            pod_template = (task.executor_config or {}).get("pod_template_file")
            if needs_owner:
                on_owner.add(f"{dag_id}.{task.task_id}")
                assert task.queue == dagconfig.OWNER_QUEUE, f"{dag_id}.{task.task_id} reaches an owner: {task.queue}"
                assert pod_template == dagconfig.OWNER_POD_TEMPLATE
            else:
                assert task.queue == default_queue, f"{dag_id}.{task.task_id} needs no owner: {task.queue}"
                assert pod_template is None
    # The jobs docs/security.md lists as still needing an owner, and nothing the least roles serve.
    assert {"schema_migrate.apply", "backup.take", "key_rotation.rewrap", "reference_sync.sync",
            "workload_generate.generate_traffic", "erasure_window.close_window", "oltp_cdc.capture",
            "platform_healthcheck.check_postgres", "nosql_ingest.prepare"} <= on_owner
    assert not {"warehouse_build.build", "fraud_score.score_charges", "fraud_train.train",
                "erasure_window.audit_verify", "oltp_cdc.slot_health", "nosql_ingest.reconcile"} & on_owner


def test_an_undeclared_task_or_dag_is_refused_at_parse_time():
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    with DAG("fraud_score", schedule=None) as dag:
        EmptyOperator(task_id="score_charges")
        EmptyOperator(task_id="undeclared")
    with pytest.raises(KeyError, match="undeclared"):
        dagconfig.route(dag)
    with DAG("brand_new_dag", schedule=None) as other:
        EmptyOperator(task_id="anything")
    with pytest.raises(KeyError, match="brand_new_dag"):
        dagconfig.route(other)


def _connection_ids_named(path: Path) -> dict[str, set[str]]:
    """Task function name -> the ``settings.*_CONN_ID`` constants its body names (imports included),
    and those of the module's own functions it calls (``_oltp()``), transitively."""
    constants = {name: value for name, value in vars(settings).items() if name.endswith("_CONN_ID")}
    functions = {node.name: node for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.FunctionDef)}
    direct: dict[str, set[str]] = {}
    calls: dict[str, set[str]] = {}
    for name, node in functions.items():
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
        names |= {alias.name for n in ast.walk(node) if isinstance(n, ast.ImportFrom) for alias in n.names}
        direct[name] = {constants[item] for item in names if item in constants}
        calls[name] = {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call)
                       and isinstance(n.func, ast.Name) and n.func.id in functions and n.func.id != name}
    found = {}
    for name in functions:
        seen, todo, conn_ids = {name}, [name], set()
        while todo:
            current = todo.pop()
            conn_ids |= direct[current]
            todo += [callee for callee in calls[current] if callee not in seen]
            seen |= calls[current]
        found[name] = conn_ids
    return found


@pytest.mark.parametrize("dag_id", ["erasure_window", "warehouse_build", "reference_sync", "fraud_features",
                                    "workload_generate", "schema_migrate", "key_rotation"])
def test_the_declaration_covers_the_connections_the_dag_code_names(dags, dag_id):
    named = _connection_ids_named(DAGS_FOLDER / f"{dag_id}.py")
    access = dagconfig.task_access(dag_id)
    for task_id, items in access.items():
        missing = named.get(task_id, set()) - set(items)
        assert not missing, f"{dag_id}.{task_id} names {missing} but TASK_ACCESS does not declare it"


def test_the_healthcheck_declaration_is_the_dag_s_own_lists():
    import importlib.util

    spec = importlib.util.spec_from_file_location("healthcheck_dag", DAGS_FOLDER / "platform_healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    access = dagconfig.task_access("platform_healthcheck")
    assert set(access["check_postgres"]) == set(module.POSTGRES_CONN_IDS)
    assert set(access["check_mongo"]) == set(module.MONGO_CONN_IDS)
