"""A capture run's Postgres connections wait for a lock only so long, then fail with a clear error."""

from __future__ import annotations

import time

import psycopg2
import pytest

from paydata import settings
from paydata.cdc.engine import source_connectors

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("role", ["connect", "owner_connect"])
def test_a_blocked_capture_connection_fails_within_its_lock_deadline(stack, admin_connect, monkeypatch, role):
    monkeypatch.setattr(settings, "PG_LOCK_TIMEOUT_MS", 500)
    holder = admin_connect(settings.connection(settings.OLTP_CONN_ID).schema)
    with holder.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(424242)")  # held until rollback
    conn = source_connectors("oltp")[role]()
    try:
        started = time.monotonic()
        with conn.cursor() as cursor, pytest.raises(psycopg2.errors.LockNotAvailable, match="lock timeout"):
            cursor.execute("SELECT pg_advisory_xact_lock(424242)")
        assert time.monotonic() - started < 10
    finally:
        conn.close()
        holder.rollback()


def test_bookkeeping_statements_are_bounded_and_snapshot_reads_are_not(stack):
    bookkeeping = settings.pg_deadlines(statements=True)["options"]
    snapshot = settings.pg_deadlines(statements=False)["options"]
    assert "lock_timeout=" in bookkeeping and "statement_timeout=" in bookkeeping
    assert "lock_timeout=" in snapshot and "statement_timeout" not in snapshot
    conn = source_connectors("oltp")["owner_connect"]()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT setting FROM pg_settings WHERE name = 'statement_timeout'")
            assert cursor.fetchone()[0] == str(settings.PG_BOOKKEEPING_STATEMENT_TIMEOUT_MS)
    finally:
        conn.close()
