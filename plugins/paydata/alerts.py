"""Failure alerts and thresholds: what every DAG does when a task fails, a run times out, a slot lags.

* :class:`FailureNotifier` is every task's and every DAG's ``on_failure_callback``. It logs one
  ERROR line naming the DAG, task, run, try and exception, and, when the Airflow connection
  ``paydata_alerts`` exists, POSTs the same facts as JSON to it (a webhook: Slack, Teams, Alertmanager
  or any HTTP receiver; ``{"text": ...}`` is the human line). Delivery failures are logged, never
  raised: an alert must not turn into a second failure.
* :func:`lag_problems` / :func:`freshness_problems` compare a CDC run report or the marts'
  freshness with thresholds; the DAGs fail a dedicated check task with what they return (that task
  failing is the alert, through the same notifier).

Imported by DAG files at parse time: nothing heavy at module level.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger("paydata.alerts")

ALERT_CONN_ID = "paydata_alerts"
WEBHOOK_TIMEOUT_SECONDS = 10

# Thresholds (the DAGs expose them as run params, so a manual run can tighten or relax them).
MAX_SLOT_LAG_BYTES = 1 << 30  # 1 GiB of WAL the slot still has to deliver
MAX_SLOT_LAG_SECONDS = 15 * 60  # since the source commit (or heartbeat) the sinks last confirmed
MAX_MARTS_AGE_HOURS = 6  # a fact reflects no OLTP commit newer than this
# Freshness is watched on the facts: OLTP writes all day. Reference data (currencies, countries,
# merchants) can rightly go unchanged for days, so its dimensions carry no age threshold.
FRESHNESS_TABLES = ("fct_balance_transaction", "fct_charge")


def failure_facts(context: dict[str, Any]) -> dict[str, Any]:
    """The facts of a failure from an Airflow callback context (task or DAG level)."""
    ti = context.get("task_instance") or context.get("ti")
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    exception = context.get("exception")
    reason = context.get("reason")
    facts = {
        "dag_id": getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None) or getattr(dag_run, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None) or context.get("run_id") or getattr(dag_run, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "map_index": getattr(ti, "map_index", None),
        "error": f"{type(exception).__name__}: {exception}" if exception else (reason or "failed"),
        "log_url": getattr(ti, "log_url", None),
    }
    if facts["map_index"] in (None, -1):
        facts.pop("map_index")
    what = f"{facts['dag_id']}.{facts['task_id']}" if facts["task_id"] else f"DAG {facts['dag_id']}"
    try_part = f" (try {facts['try_number']})" if facts.get("try_number") else ""
    facts["text"] = f"[paydata] {what} failed in run {facts['run_id']}{try_part}: {facts['error']}"
    return facts


def webhook_url(conn: Any) -> str:
    """The URL of an HTTP connection: ``host`` when it is a whole URL, else scheme (``schema``, default
    https), host, port and ``extra.endpoint``."""
    host = (getattr(conn, "host", None) or "").strip()
    if "://" in host:
        return host
    if not host:
        raise ValueError(f"connection {getattr(conn, 'conn_id', ALERT_CONN_ID)!r} has no host")
    scheme = getattr(conn, "schema", None) or "https"
    port = getattr(conn, "port", None)
    extra = getattr(conn, "extra_dejson", None) or getattr(conn, "extra", None) or {}
    if isinstance(extra, str):
        extra = json.loads(extra or "{}")
    endpoint = str(extra.get("endpoint", "")).lstrip("/")
    return f"{scheme}://{host}{f':{port}' if port else ''}/{endpoint}"


def _lookup(conn_id: str):
    """The alert connection, or None when it is not configured."""
    try:
        from airflow.sdk import Connection

        return Connection.get(conn_id)
    except Exception:  # outside a task (or not defined): fall back to the AIRFLOW_CONN_* variable
        from paydata import settings

        try:
            return settings.connection(conn_id)
        except Exception:
            return None


def send_webhook(url: str, payload: dict[str, Any], timeout: float = WEBHOOK_TIMEOUT_SECONDS) -> int:
    """POST ``payload`` as JSON; return the HTTP status (raises on network errors and HTTP >= 400)."""
    request = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (operator-set URL)
        return response.status


class FailureNotifier(BaseNotifier):
    """``on_failure_callback`` of every paydata task and DAG: an ERROR log line, and the webhook of the
    ``paydata_alerts`` connection when there is one."""

    def __init__(self, conn_id: str = ALERT_CONN_ID):
        super().__init__()
        self.conn_id = conn_id

    def render_template_fields(self, context, jinja_env=None) -> None:
        """Nothing of this notifier is templated. Skipping the rendering also keeps DAG-level
        callbacks working under `airflow dags test`, whose context holds a SerializedDAG without a
        template environment (apache/airflow#64649)."""

    def notify(self, context) -> None:
        facts = failure_facts(dict(context))
        log.error("%s%s", facts["text"], f" log: {facts['log_url']}" if facts.get("log_url") else "")
        conn = _lookup(self.conn_id)
        if conn is None:
            return
        try:
            status = send_webhook(webhook_url(conn), facts)
            log.info("alert sent to connection %s (HTTP %s)", self.conn_id, status)
        except Exception as exc:  # never fail the callback
            log.error("alert could not be delivered to connection %s: %s", self.conn_id, exc)


def lag_problems(report: dict[str, Any], max_lag_bytes: int = MAX_SLOT_LAG_BYTES,
                 max_lag_seconds: float = MAX_SLOT_LAG_SECONDS) -> list[str]:
    """What is wrong with a CDC run report's lag (empty when within both thresholds)."""
    problems = []
    lag_bytes = report.get("lag_bytes")
    if lag_bytes is not None and int(lag_bytes) > max_lag_bytes:
        problems.append(f"slot {report.get('slot')} lags {int(lag_bytes):,} bytes of WAL (threshold {max_lag_bytes:,})")
    lag_seconds = report.get("lag_seconds")
    if lag_seconds is not None and float(lag_seconds) > max_lag_seconds:
        problems.append(f"slot {report.get('slot')} confirmed nothing newer than {float(lag_seconds):,.0f} s ago "
                        f"(threshold {max_lag_seconds:,.0f} s)")
    if report.get("wal_status") in ("lost", "unreserved"):
        problems.append(f"slot {report.get('slot')} wal_status is {report['wal_status']}")
    return problems


def freshness_problems(rows: list[dict[str, Any]], now: datetime, max_age: timedelta) -> list[str]:
    """Marts tables (rows of ``marts.freshness``) whose newest source commit is older than ``max_age``."""
    problems = []
    for row in rows:
        commit_at = row.get("source_commit_at")
        if commit_at is None:
            continue
        age = now - commit_at
        if age > max_age:
            problems.append(f"{row['table_name']} reflects no source commit newer than {commit_at.isoformat()} "
                            f"({age.total_seconds() / 3600:.1f} h; threshold {max_age.total_seconds() / 3600:.1f} h)")
    return problems
