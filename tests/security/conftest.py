"""Fixtures of the attack replays: they run against the local stack's real databases and roles."""

from __future__ import annotations

import pytest

from paydata.stack.config import PG_CDC_ROLE

MERCHANT = 990_001


@pytest.fixture(scope="session")
def cdc_password(stack):
    return stack.password_file(PG_CDC_ROLE).read_text().strip()


@pytest.fixture(scope="session")
def cdc_connect(stack, cdc_password):
    """``cdc_connect(dbname, **kwargs)``: a connection as the capture role, the way CDC logs in."""
    import psycopg2

    opened = []

    def _connect(dbname: str, **kwargs):
        conn = psycopg2.connect(host=str(stack.pg_socket_dir), port=stack.pg_port, user=PG_CDC_ROLE,
                                password=cdc_password, dbname=dbname, connect_timeout=5, **kwargs)
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        if not conn.closed:
            conn.close()


@pytest.fixture(scope="session")
def migrated_stack(stack):
    """The stack's own databases migrated and defined, as `stack up` and `schema_migrate` leave them
    (whatever ran before: a test run may start with a security test)."""
    from paydata.migrations import apply_all

    apply_all()
    return stack


@pytest.fixture(scope="session")
def stack_oltp(migrated_stack):
    """The stack's OLTP database as the application sees it, with one test merchant synced."""
    from paydata import settings
    from paydata.keystore import set_default_keystore

    set_default_keystore(None)  # the real key store, whatever an earlier test installed
    conn = settings.pg_connect(settings.OLTP_CONN_ID)
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO currency_ref (currency_code, minor_units) VALUES ('USD', 2) "
                       "ON CONFLICT DO NOTHING")
        cursor.execute("INSERT INTO merchant_ref (merchant_id, country_code, default_currency_code, status) "
                       "VALUES (%s, 'US', 'USD', 'active') ON CONFLICT DO NOTHING", (MERCHANT,))
    conn.commit()
    yield conn
    conn.close()
