"""
### Erasure window: close it, then prove each erasure complete

Daily. An erasure destroys the customer's data key and wipes OLTP at once, but copies outlive it
for a while: the key's bytes in the key table's file, old row versions in OLTP pages, the WAL,
backups taken before. `close_window` does the platform's part: rewrites key tables holding
destroyed keys, VACUUMs the OLTP erasure tables, ends the WAL segment and checkpoints.

`erasure_complete` then checks every erasure not yet proven: key gone from the key store, OLTP
wiped, key table rewritten since, sources vacuumed since, no WAL segment left from before (so
every replication slot confirmed past it and no archive), no backup taken before it left. Each
erasure that passes gets an `erasure_completed` row in the OLTP audit log; the others stay pending
with the checks still open (in XCom). The longest wait is the backup retention
(`PAYDATA_BACKUP_RETENTION_DAYS`); docs/security.md states the window.

Idempotent: completed erasures are never checked or recorded twice.

`audit_verify` (independent of the two above) recomputes the OLTP and reference audit logs' hash
chains as the auditor (`paydata_oltp_auditor`, `paydata_reference_auditor`, read-only) and fails, naming the first broken link, when a row
was edited, removed, reordered or forged; its XCom is the report with the chain head
(`python -m paydata.oltp audit-verify` does the same by hand; docs/security.md).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from paydata.dagconfig import DAG_FAILURE, default_args, route


def _oltp():
    from paydata.settings import OLTP_CONN_ID, load_env_file, pg_connect

    load_env_file(missing_ok=True)
    return pg_connect(OLTP_CONN_ID)


@dag(
    dag_id="erasure_window",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["paydata", "security", "gdpr"],
    description="Close each erasure's window and prove every copy of the erased data is gone (daily)",
    dagrun_timeout=pendulum.duration(hours=2),
    doc_md=__doc__,
    on_failure_callback=DAG_FAILURE,
    default_args=default_args(retry_delay=pendulum.duration(minutes=5), execution_timeout=pendulum.duration(hours=1)),
)
def erasure_window():
    @task(multiple_outputs=False)
    def close_window() -> dict:
        from paydata.keystore.window import close_window as close

        conn = _oltp()
        try:
            return close(conn)
        finally:
            conn.close()

    @task(multiple_outputs=False)
    def erasure_complete(_closed: dict) -> dict:
        from paydata.backup import backup_root
        from paydata.keystore.window import complete_erasures

        conn = _oltp()
        try:
            return complete_erasures(conn, backup_dir=backup_root())
        finally:
            conn.close()

    @task(multiple_outputs=False)
    def audit_verify() -> dict:
        from paydata.oltp.audit import verify_chain
        from paydata.settings import (
            OLTP_AUDITOR_CONN_ID,
            REFERENCE_AUDITOR_CONN_ID,
            load_env_file,
            pg_connect,
        )

        load_env_file(missing_ok=True)
        reports = {}
        for database, conn_id in (("oltp", OLTP_AUDITOR_CONN_ID), ("reference", REFERENCE_AUDITOR_CONN_ID)):
            conn = pg_connect(conn_id)
            try:
                reports[database] = verify_chain(conn, database=database)
            finally:
                conn.close()
        broken = [f"{database} audit chain broken at position {report.broken_at} "
                  f"(audit_log_id {report.audit_log_id}): {report.problem}"
                  for database, report in reports.items() if not report.ok]
        if broken:
            raise RuntimeError("; ".join(broken))
        return {database: report.as_dict() for database, report in reports.items()}

    erasure_complete(close_window())
    audit_verify()


route(erasure_window())
