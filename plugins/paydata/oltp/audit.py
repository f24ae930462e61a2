"""The insert-only ``audit_log`` of erasures, key rotations and reads of personal data.

Rows hold ids, action and reason codes, field names and key ids, never personal data. Both the
OLTP and the reference database have one; the database stamps ``actor`` and ``occurred_at`` and
rejects UPDATE, DELETE and TRUNCATE.

In OLTP (migration V011) rows are written only through the ``audit_append`` SECURITY DEFINER
function. In both (OLTP V011, reference V009) the subject must exist and every row is linked into a
SHA-256 hash chain: :func:`verify_chain` recomputes it and names the first broken link (``python -m
paydata.oltp audit-verify``, the ``audit_verify`` DAG task). docs/security.md, *Tamper-evident audit*.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
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


GENESIS_HASH = bytes(32)


@dataclass(frozen=True)
class ChainReport:
    """What :func:`verify_chain` found. ``ok`` is False when any link is broken; ``broken_at`` is the
    chain position of the first broken link (``None`` when intact), ``problem`` says what is wrong
    there. ``head_position``/``head_hash`` are the last link as the rows show it: keep them somewhere
    the database's owner cannot write, and pass them back as ``anchor`` to detect a rewritten chain."""

    ok: bool
    rows: int
    head_position: int
    head_hash: str
    broken_at: int | None = None
    audit_log_id: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def row_hash(canonical: str, prev_hash: bytes) -> bytes:
    """SHA-256 of a row's canonical text, '|' and the hex of the previous row's hash."""
    return hashlib.sha256(f"{canonical}|{prev_hash.hex()}".encode()).digest()


def verify_chain(conn, *, anchor: tuple[int, str] | None = None, batch_size: int = 5000,
                 database: str = "oltp") -> ChainReport:
    """Recompute the audit chain of ``database`` (``oltp`` or ``reference``, whichever ``conn`` is
    connected to) and report the first broken link.

    Checked per row, in chain order: positions run 1, 2, 3... without a gap (a removed or inserted
    row), ``prev_hash`` is the previous row's ``row_hash`` (a removed or reordered row), and
    ``row_hash`` matches the fields (an edited row). Then the chain head table must name the last
    row (rows removed from the end), and ``anchor`` = (position, hex hash), a head recorded earlier
    outside the database, must still be in the chain with that hash (a chain rewritten by someone
    with the owner's rights). Read-only: the ``auditor`` role suffices. Streams the rows through a
    server-side cursor, so memory does not grow with the log.
    """
    expected_position, previous = 1, GENESIS_HASH
    anchor_seen = anchor is None or anchor[0] == 0
    failure: tuple[int, int, str] | None = None
    with conn.cursor(name="audit_chain") as cursor:
        cursor.itersize = batch_size
        cursor.execute(_sql(database, "audit_chain_rows"))
        for position, audit_log_id, prev_hash, stored_hash, canonical in cursor:
            if position != expected_position:
                failure = (expected_position, audit_log_id,
                           f"position {position} follows {expected_position - 1}: a row is missing or was moved")
            elif bytes(prev_hash) != previous:
                failure = (position, audit_log_id, "prev_hash does not match the previous row's hash")
            elif row_hash(canonical, previous) != bytes(stored_hash):
                failure = (position, audit_log_id, "row_hash does not match the row's fields: the row was edited")
            elif anchor is not None and position == anchor[0]:
                if bytes(stored_hash).hex() != anchor[1].lower():
                    failure = (position, audit_log_id, "the anchored head's hash changed: the chain was rewritten")
                anchor_seen = True
            if failure:
                break
            previous, expected_position = bytes(stored_hash), position + 1
    conn.rollback()
    if failure:
        position = failure[0]
        return ChainReport(False, position - 1, position - 1, previous.hex(), *failure)
    rows = expected_position - 1
    with conn.cursor() as cursor:
        cursor.execute(_sql(database, "audit_chain_head"))
        head = cursor.fetchone()
    conn.rollback()
    if head is None or head[0] != rows or bytes(head[1]) != previous:
        return ChainReport(False, rows, rows, previous.hex(), rows + 1, None,
                           f"the chain head names position {head[0] if head else None}, the rows end at {rows}: "
                           "rows were removed from the end")
    if not anchor_seen:
        return ChainReport(False, rows, rows, previous.hex(), anchor[0], None,
                           f"the anchored position {anchor[0]} is past the end of the chain ({rows})")
    return ChainReport(True, rows, rows, previous.hex())


def parse_anchor(text: str) -> tuple[int, str]:
    """``"<position>:<64 hex digits>"`` -> (position, hash); raises :class:`InvalidRequest`."""
    position, sep, digest = text.partition(":")
    if not sep or not position.isdigit() or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
        raise InvalidRequest(f"anchor must look like '<position>:<64 hex digits of sha256>', got {text!r}")
    return int(position), digest.lower()
