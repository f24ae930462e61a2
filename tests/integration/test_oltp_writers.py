"""Concurrent writers: a realistic mix from 4 workers leaves a consistent database."""

from __future__ import annotations

import threading

import pytest

from paydata.keystore import default_keystore
from paydata.migrations import apply_migrations
from paydata.oltp.app import ledger_discrepancies
from paydata.oltp.errors import InvalidRequest
from paydata.oltp.writers import run_writers

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_keystore")]


@pytest.fixture
def oltp_factory(stack, admin_connect, fresh_database):
    """A migrated OLTP database with two active merchants; returns a connection factory for it."""
    from paydata.stack import admin_connect as connect

    name = fresh_database(prefix="oltp_writers")
    conn = admin_connect(name)
    apply_migrations(conn, "oltp")
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO currency_ref (currency_code, minor_units) VALUES ('USD', 2), ('JPY', 0)")
        cursor.execute("INSERT INTO merchant_ref (merchant_id, country_code, default_currency_code, status) "
                       "VALUES (1, 'US', 'USD', 'active'), (2, 'JP', 'JPY', 'active'), (3, 'US', 'USD', 'closed')")
    conn.commit()
    opened = []

    def factory():
        opened.append(connect(dbname=name, config=stack))
        return opened[-1]

    factory.check_conn = conn
    yield factory
    for extra in opened:
        if not extra.closed:
            extra.close()


def scalar(conn, statement):
    with conn.cursor() as cursor:
        cursor.execute(statement)
        value = cursor.fetchone()[0]
    conn.rollback()
    return value


def test_four_workers_for_five_seconds_leave_no_violations_and_a_consistent_ledger(oltp_factory):
    stats = run_writers(4, duration_s=5, seed=7, conn_factory=oltp_factory)

    assert stats.total_errors == 0, stats.error_samples
    assert 4.5 <= stats.elapsed_s < 30
    assert stats.total_ops > 100
    for operation in ("create_customer", "add_card", "create_payment", "settle_charge", "refund",
                      "read_customer", "find_customer"):
        assert stats.ops[operation] > 0, (operation, stats.as_dict())
    conn = oltp_factory.check_conn
    assert ledger_discrepancies(conn) == []
    assert scalar(conn, "SELECT count(*) FROM customer") == stats.ops["create_customer"]
    assert scalar(conn, "SELECT count(*) FROM charge WHERE status = 'pending'") == (
        stats.ops["create_payment"] - stats.ops["settle_charge"])
    assert scalar(conn, "SELECT count(*) FROM customer WHERE erased_at IS NOT NULL") == stats.ops["erase_customer"]
    # Every customer with personal data still has its key; every erased one has none.
    keys = default_keystore()
    with conn.cursor() as cursor:
        cursor.execute("SELECT customer_id, erased_at IS NOT NULL FROM customer")
        customers = cursor.fetchall()
    conn.rollback()
    assert all(bool(keys.key_ids("customer", customer_id)) != erased for customer_id, erased in customers)
    assert scalar(conn, "SELECT count(*) FROM customer WHERE merchant_id = 3") == 0, "closed merchant untouched"
    assert scalar(conn, "SELECT count(*) FROM (SELECT c.charge_id FROM refund r JOIN charge c USING (charge_id) "
                        "GROUP BY c.charge_id, c.amount HAVING sum(r.amount) > c.amount) AS over_refunded") == 0


def test_stop_event_and_op_limit_end_the_run(oltp_factory):
    stop = threading.Event()
    stop.set()
    stopped = run_writers(2, stop_event=stop, conn_factory=oltp_factory, merchant_ids=[1])
    assert stopped.total_ops == 0

    limited = run_writers(2, ops_per_worker=15, seed=1, conn_factory=oltp_factory, merchant_ids=[1],
                          mix={"create_customer": 1, "read_customer": 1})
    assert limited.total_ops == 30 and limited.total_errors == 0
    assert set(limited.ops) <= {"create_customer", "read_customer"}


def test_bad_arguments_are_rejected_before_any_write(oltp_factory):
    with pytest.raises(InvalidRequest, match="never stop"):
        run_writers(2, conn_factory=oltp_factory)
    with pytest.raises(InvalidRequest, match="unknown: teleport"):
        run_writers(2, ops_per_worker=1, conn_factory=oltp_factory, mix={"teleport": 1})
    with pytest.raises(InvalidRequest, match="n_workers"):
        run_writers(0, ops_per_worker=1, conn_factory=oltp_factory)
    with pytest.raises(InvalidRequest, match="no active merchant"):
        run_writers(1, ops_per_worker=1, conn_factory=oltp_factory, merchant_ids=[])
    assert scalar(oltp_factory.check_conn, "SELECT count(*) FROM customer") == 0
