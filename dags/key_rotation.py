"""
### Key rotation: rewrap data keys under the active KEK

Run after appending a new key-encryption key (`python -m paydata.crypto rotate-kek`, which makes
it the active KEK) and deploying the updated key file to the workers, or after rotating the KMS
key (`PAYDATA_KMS=vault`). Re-wraps every data key in the key store that is not yet under the
active KEK:

* `merchant_data_key` (merchant KYC fields; audit row in the reference database),
* `customer_data_key` (customer personal data; audit row in the OLTP database).

Field ciphertexts are not touched: they are encrypted with the data keys, which do not change.
Works in small batches (short transactions, no long locks), skips keys replaced or shredded
meanwhile, and is idempotent: a rerun rewraps 0. Each run that rewrapped something leaves an
`audit_log` row in the owner's source database. When both tasks report 0 left to do, the old KEK line can be
retired from the key file.

Manual only. XCom per task: table, active KEK id, rewrapped, skipped, batches; `summary` says
whether every data key is under the active KEK.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from paydata.dagconfig import DAG_FAILURE, default_args, route

DATA_KEY_TABLES = [
    {"database": "reference", "table": "merchant_data_key"},
    {"database": "oltp", "table": "customer_data_key"},
]


@dag(
    dag_id="key_rotation",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    description="Re-wrap every stored data key under the active key-encryption key (manual)",
    dagrun_timeout=pendulum.duration(hours=2),
    tags=["paydata", "security", "keys"],
    doc_md=__doc__,
    on_failure_callback=DAG_FAILURE,
    default_args=default_args(retry_delay=pendulum.duration(minutes=1), execution_timeout=pendulum.duration(hours=1)),
)
def key_rotation():
    @task(multiple_outputs=False)
    def rewrap(target: dict) -> dict:
        from paydata.crypto import reload_keys
        from paydata.oltp.keys import rewrap_data_keys
        from paydata.settings import POSTGRES_DATABASES, load_env_file, pg_connect

        # The key file location may come from the stack's env file; always read the file afresh
        # so a worker that loaded the ring before the rotation uses the new active KEK.
        load_env_file(missing_ok=True)
        reload_keys()
        conn = pg_connect(POSTGRES_DATABASES[target["database"]])
        try:
            return rewrap_data_keys(conn, target["table"]).as_dict()
        finally:
            conn.close()

    @task(multiple_outputs=False)
    def summary(results: list[dict]) -> dict:
        """Both tables rewrapped in full: the retired KEK line may now be removed from the key file."""
        return {"tables": len(results), "rewrapped": sum(int(r.get("rewrapped", 0)) for r in results)}

    summary(rewrap.expand(target=DATA_KEY_TABLES))


route(key_rotation())
