"""
### Encrypted backup with restore drill

Daily. Takes an encrypted backup of every database (`pg_dump -Fc` of reference, OLTP, warehouse
and the key store) and of the Mongo database, each streamed through AES-256-GCM in chunks under a
per-backup data key wrapped by the backup KEK (`PAYDATA_BACKUP_KEK_FILE`, kept apart from the
data KEK). No plaintext copy is ever written to disk. A sealed manifest lists sizes, SHA-256 of
ciphertext and plaintext, and rows and checksums of every table and collection.

Then the **restore drill** restores that backup into the `restore_drill_*` scratch databases,
reconciles rows and checksums with the manifest, empties the scratch databases and records the
result beside the backup; a mismatch, a wrong key or an altered file fails the task.
Finally backups past their retention (`PAYDATA_BACKUP_RETENTION_DAYS`, default 35) are deleted:
the retention bounds how long an erased customer's data survives in backups (docs/security.md).

Idempotent: the backup id is the run's data interval end; a rerun finds the backup complete.
XCom: backup id, bytes, seconds; drill result; ids expired.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task

from paydata.dagconfig import DAG_FAILURE, default_args, route


@dag(
    dag_id="backup",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["paydata", "security", "backup"],
    description="Encrypted backup of every database and Mongo, restore drill into scratch databases, retention (daily)",
    dagrun_timeout=pendulum.duration(hours=3),
    doc_md=__doc__,
    on_failure_callback=DAG_FAILURE,
    default_args=default_args(retry_delay=pendulum.duration(minutes=5), execution_timeout=pendulum.duration(hours=1)),
)
def backup():
    @task(multiple_outputs=False)
    def take() -> dict:
        from paydata.backup import backup_root, take_backup
        from paydata.backup.catalog import backup_id_for
        from paydata.settings import load_env_file

        load_env_file(missing_ok=True)
        moment = get_current_context()["data_interval_end"]
        manifest = take_backup(backup_root(), backup_id_for(moment))
        return {"backup_id": manifest["backup_id"], "bytes": manifest["bytes"], "seconds": manifest["seconds"]}

    @task(multiple_outputs=False)
    def restore_drill(taken: dict) -> dict:
        from paydata.backup import backup_root
        from paydata.backup import restore_drill as drill

        result = drill(backup_root(), taken["backup_id"])
        if not result.ok:
            raise RuntimeError(f"restore drill of {result.backup_id} failed: {result.problems}")
        return result.as_dict()

    @task
    def expire(_drilled: dict) -> list[str]:
        from paydata.backup import backup_root
        from paydata.backup import expire as expire_backups

        return expire_backups(backup_root(), get_current_context()["data_interval_end"])

    expire(restore_drill(take()))


route(backup())
