"""What every paydata DAG shares: owner, retries with backoff, task timeouts, the failure alert,
and which worker runs each task.

DAG files pass ``default_args=default_args(...)`` and ``on_failure_callback=DAG_FAILURE`` and hand
their DAG to ``route``; the integrity tests check that every task ends up with an owner, at least
two retries, exponential backoff, an ``execution_timeout`` and the notifier, and the routing tests
that every task is in ``TASK_ACCESS`` and on its queue. Imported at parse time: cheap (no
connection is opened; ``settings`` only names them).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from paydata import settings
from paydata.alerts import FailureNotifier

OWNER = "platform"
RETRY_BACKOFF = 2.0  # each retry waits twice as long as the one before ...
MAX_RETRY_DELAY = timedelta(minutes=10)  # ... up to this

# A DAG run that is still going after its dagrun_timeout is failed (and alerted by DAG_FAILURE).
DAG_FAILURE = FailureNotifier()


def default_args(*, retries: int = 2, retry_delay: timedelta = timedelta(seconds=30),
                 execution_timeout: timedelta = timedelta(minutes=30), **extra: Any) -> dict[str, Any]:
    """``default_args`` of a paydata DAG; ``execution_timeout`` bounds every try of every task."""
    return {
        "owner": OWNER,
        "retries": retries,
        "retry_delay": retry_delay,
        "retry_exponential_backoff": RETRY_BACKOFF,
        "max_retry_delay": MAX_RETRY_DELAY,
        "execution_timeout": execution_timeout,
        "on_failure_callback": FailureNotifier(),
        **extra,
    }


# -- Which worker runs a task ------------------------------------------------------------------------
# Owner-level access: the schema owners' and the key store owner's Postgres connections, the Mongo
# administrator, and the owner worker's files (encrypted backups, landing files). Only the
# ``airflow-worker-owner`` pool (compose) or the owner task pod (Helm) has them; every other worker
# has the least-privilege connections only. docs/security.md, *Which role each job connects as*.
OWNER_QUEUE = "owner"
# KubernetesExecutor (Helm) has no queues: an owner task's pod is built from this template instead
# of the default one (helm/airflow-values.yaml mounts it into the scheduler).
OWNER_POD_TEMPLATE = "/opt/paydata/pod_templates/owner.yaml"
BACKUPS = "files:backups"  # PAYDATA_BACKUP_DIR and the backup KEK
LANDING = "files:landing"  # PAYDATA_LANDING_DIR: the landing files the generator writes and the ingest reads
OWNER_CONNECTIONS = frozenset({
    settings.REFERENCE_CONN_ID, settings.OLTP_CONN_ID, settings.WAREHOUSE_CONN_ID, settings.KEYSTORE_CONN_ID,
    settings.MONGO_CONN_ID,
})
OWNER_ACCESS = OWNER_CONNECTIONS | {BACKUPS, LANDING}

# What each task of each DAG reaches: connection ids and owner-worker files. ``{capture}`` and
# ``{owner}`` stand for a CDC source's connections (``settings.capture_conn_id``/``owner_conn_id``).
# tests/dags checks that this covers every task of every DAG, and that ``route`` put each task on
# the queue its entry asks for.
_SOURCES = (settings.REFERENCE_CONN_ID, settings.OLTP_CONN_ID)
_POSTGRES_OWNERS = tuple(settings.POSTGRES_DATABASES.values())
TASK_ACCESS: dict[str, dict[str, tuple[str, ...]]] = {
    "{source}_cdc": {
        "slot_health": ("{capture}", settings.WAREHOUSE_LOADER_CONN_ID),
        # the owner connection maintains the source's publication (docs/cdc.md)
        "capture": ("{capture}", "{owner}", settings.WAREHOUSE_LOADER_CONN_ID, settings.MONGO_CDC_CONN_ID),
        "publish_staging": (),
        "publish_mongo": (),
        "lag_check": (),
    },
    "backup": {
        "take": (*_POSTGRES_OWNERS, settings.MONGO_BACKUP_CONN_ID, BACKUPS),
        "restore_drill": (*_POSTGRES_OWNERS, settings.MONGO_BACKUP_CONN_ID, settings.MONGO_CONN_ID, BACKUPS),
        "expire": (BACKUPS,),
    },
    "erasure_window": {
        "close_window": (settings.OLTP_CONN_ID, settings.KEYSTORE_CONN_ID),
        "erasure_complete": (settings.OLTP_CONN_ID, settings.KEYSTORE_CONN_ID, BACKUPS),
        "audit_verify": (settings.OLTP_AUDITOR_CONN_ID, settings.REFERENCE_AUDITOR_CONN_ID),
    },
    "fraud_features": {
        "build_offline": (settings.WAREHOUSE_ML_CONN_ID, settings.MONGO_FEATURES_CONN_ID),
        "refresh_online": (settings.WAREHOUSE_ML_CONN_ID, settings.MONGO_FEATURES_CONN_ID),
    },
    "fraud_monitor": {"monitor": (settings.WAREHOUSE_ML_CONN_ID,), "request_retrain": ()},
    "fraud_score": {"score_charges": (settings.WAREHOUSE_ML_CONN_ID, settings.FRAUD_SCORER_CONN_ID)},
    "fraud_train": {"training_set": (settings.WAREHOUSE_ML_CONN_ID,), "train": (settings.WAREHOUSE_ML_CONN_ID,)},
    "key_rotation": {"rewrap": (*_SOURCES, settings.KEYSTORE_CONN_ID), "summary": ()},
    "nosql_ingest": {
        "prepare": (settings.MONGO_CONN_ID,),  # collection definitions
        # the scrubbing safeguard decrypts the known customers: data keys from the key store
        "ingest": (settings.MONGO_INGEST_CONN_ID, settings.OLTP_APP_CONN_ID, settings.KEYSTORE_CONN_ID, LANDING),
        "reconcile": (settings.MONGO_INGEST_CONN_ID,),
        "clean_landing": (settings.MONGO_INGEST_CONN_ID, LANDING),
    },
    "platform_healthcheck": {
        "check_postgres": _POSTGRES_OWNERS,  # checks the owner connections themselves
        "check_mongo": tuple(user for user in settings.MONGO_USERS if user not in settings.SERVICE_MONGO_CONN_IDS),
        "summary": (),
    },
    "reference_sync": {"sync": _SOURCES},
    "schema_migrate": {
        "apply_keystore": (settings.KEYSTORE_CONN_ID,),
        "move_legacy_keys": (*_SOURCES, settings.KEYSTORE_CONN_ID),
        "apply": _SOURCES,
        "apply_warehouse": (settings.WAREHOUSE_CONN_ID,),
        "apply_mongo_definitions": (settings.MONGO_CONN_ID,),
    },
    "warehouse_build": {
        "build": (settings.WAREHOUSE_LOADER_CONN_ID,),
        "quality_checks": (settings.WAREHOUSE_LOADER_CONN_ID,),
        "freshness_check": (settings.WAREHOUSE_LOADER_CONN_ID,),
        "refresh_aggregates": (settings.WAREHOUSE_LOADER_CONN_ID,),
        "label_charges": (settings.WAREHOUSE_LOADER_CONN_ID,),
        "reconcile": (settings.WAREHOUSE_LOADER_CONN_ID, settings.OLTP_APP_CONN_ID),
    },
    "workload_generate": {
        # reference data is written by its owner; the OLTP loads COPY into staging tables they create
        "seed_reference": (settings.REFERENCE_CONN_ID, settings.KEYSTORE_CONN_ID),
        "sync_replicas": _SOURCES,
        "generate_traffic": (*_SOURCES, settings.KEYSTORE_CONN_ID),
        "write_landing": (settings.REFERENCE_CONN_ID, LANDING),
    },
}
_CDC_SUFFIX = "_cdc"


def task_access(dag_id: str) -> dict[str, tuple[str, ...]]:
    """Task id -> what the task reaches, for ``dag_id``; a DAG missing here is an error."""
    if dag_id in TASK_ACCESS:
        return TASK_ACCESS[dag_id]
    if dag_id.endswith(_CDC_SUFFIX):
        source = dag_id[: -len(_CDC_SUFFIX)]
        names = {"{capture}": settings.capture_conn_id(source), "{owner}": settings.owner_conn_id(source)}
        return {task_id: tuple(names.get(item, item) for item in access)
                for task_id, access in TASK_ACCESS["{source}_cdc"].items()}
    raise KeyError(f"DAG {dag_id!r} is not in paydata.dagconfig.TASK_ACCESS: declare what its tasks reach")


def queue_for(access: tuple[str, ...] | frozenset[str]) -> str | None:
    """``OWNER_QUEUE`` when ``access`` includes anything owner-level, else ``None`` (the default queue)."""
    return OWNER_QUEUE if OWNER_ACCESS.intersection(access) else None


def route(dag):
    """Put each task of ``dag`` on the queue its ``TASK_ACCESS`` entry asks for; returns ``dag``.

    A task with no entry is an error at parse time, so a new task cannot silently land on a worker
    that lacks (or holds more than) what it needs. An owner task also names ``OWNER_POD_TEMPLATE``
    for the KubernetesExecutor; the Celery executor uses only the queue, the LocalExecutor neither.
    """
    access = task_access(dag.dag_id)
    unknown = sorted(set(dag.task_ids) - set(access))
    if unknown:
        raise KeyError(f"{dag.dag_id}: tasks {unknown} are not in paydata.dagconfig.TASK_ACCESS")
    for task in dag.tasks:
        if queue_for(access[task.task_id]) == OWNER_QUEUE:
            task.queue = OWNER_QUEUE
            config = {**(task.executor_config or {}), "pod_template_file": OWNER_POD_TEMPLATE}
            if hasattr(task, "partial_kwargs"):  # a mapped task keeps its arguments there
                task.partial_kwargs["executor_config"] = config
            else:
                task.executor_config = config
    return dag
