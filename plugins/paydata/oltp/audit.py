"""The insert-only ``audit_log`` of erasures and key rotations (OLTP and reference databases).

Rows hold ids, action and reason codes and key ids, never personal data. The database stamps
``actor`` (``current_user``) and ``occurred_at`` and rejects UPDATE, DELETE and TRUNCATE.
"""

from __future__ import annotations

import re
from typing import Any

from psycopg2.extras import Json

from paydata.oltp._db import oltp_sql, reference_sql, transaction
from paydata.oltp.errors import InvalidRequest

REASON_CODE = re.compile(r"[a-z][a-z_]{2,63}")
DATABASES = ("oltp", "reference")


def _sql(database: str, name: str) -> str:
    if database not in DATABASES:
        raise InvalidRequest(f"audit_log lives in {' or '.join(DATABASES)}, not {database!r}")
    return oltp_sql(name) if database == "oltp" else reference_sql(name)


def record(
    cursor,
    action: str,
    subject_table: str,
    subject_id: int | None = None,
    *,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    database: str = "oltp",
) -> int:
    """Insert one audit row in the caller's transaction and return its id.

    ``reason`` must be a code (lower-case letters and '_'), ``detail`` a JSON object of non-personal
    facts (counts, key ids). Raises :class:`InvalidRequest` for a malformed reason; the database
    rejects unknown actions.
    """
    if reason is not None and not REASON_CODE.fullmatch(reason):
        raise InvalidRequest(f"audit reason must be a code like 'data_subject_request', got {reason!r}")
    cursor.execute(
        _sql(database, "audit_insert"),
        {
            "action": action,
            "subject_table": subject_table,
            "subject_id": subject_id,
            "reason": reason,
            "detail": Json(detail or {}),
        },
    )
    return cursor.fetchone()[0]


def audit_events(
    conn, subject_table: str | None = None, subject_id: int | None = None, *, database: str = "oltp"
) -> list[dict[str, Any]]:
    """Audit rows (oldest first), optionally only those about one table or one subject."""
    with transaction(conn, "reading the audit log") as cursor:
        cursor.execute(
            _sql(database, "audit_select"), {"subject_table": subject_table, "subject_id": subject_id}
        )
        columns = [column.name for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
