"""Shared fixtures. Only integration tests that ask for ``stack`` (directly or through the other
fixtures) start services; DAG and unit tests stay service-free."""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

import pytest

try:
    import paydata  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

IDENTIFIER_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


def _unique_name(prefix: str) -> str:
    if not IDENTIFIER_PREFIX.match(prefix):
        raise ValueError(f"prefix {prefix!r} must be lowercase letters, digits or '_' and start with a letter")
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def stack():
    """The default local stack, brought up (or found running) once per session; returns its StackConfig.

    The stack is left running afterwards: it is the developer's stack, not a throwaway one."""
    from paydata.stack import ensure_up

    return ensure_up()


@pytest.fixture(scope="session")
def admin_connect(stack):
    """``admin_connect(dbname="postgres")`` -> psycopg2 connection as superuser; closed at session end."""
    from paydata.stack import admin_connect as connect

    opened = []

    def _connect(dbname: str = "postgres"):
        conn = connect(dbname=dbname, config=stack)
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        if not conn.closed:
            conn.close()


@pytest.fixture
def fresh_database(admin_connect):
    """``fresh_database(prefix="t", owner=None) -> dbname``: a new uniquely named database (owned by
    ``owner`` or the superuser), dropped WITH (FORCE) at teardown."""
    from paydata.stack.config import PG_SUPERUSER
    from paydata.stack.postgres import sql_statement

    created = []
    conn = admin_connect("postgres")
    conn.autocommit = True

    def _create(prefix: str = "t", owner: str | None = None) -> str:
        name = _unique_name(prefix)
        with conn.cursor() as cursor:
            cursor.execute(sql_statement("create_database", database=name, owner=owner or PG_SUPERUSER))
        created.append(name)
        return name

    yield _create
    with conn.cursor() as cursor:
        for name in created:
            cursor.execute(sql_statement("drop_database_force", database=name))
    conn.close()


@pytest.fixture
def mongo_db(stack):
    """A pymongo Database with a unique name, dropped at teardown; the client is ``paydata_root``
    (only it may create databases other than ``paydata``)."""
    from paydata.stack import mongo_root_client

    client = mongo_root_client(stack, serverSelectionTimeoutMS=5000)
    database = client[_unique_name("t")]
    yield database
    client.drop_database(database.name)
    client.close()


@pytest.fixture
def fresh_keystore(admin_connect, fresh_database):
    """A throwaway key store database (migrated) made the process-wide key store for the test;
    returns its :class:`paydata.keystore.KeyStore`. Test OLTP databases number their customers
    from 1, so each needs its own key store."""
    from paydata.keystore import KeyStore, set_default_keystore
    from paydata.migrations import apply_migrations

    name = fresh_database(prefix="keystore")
    conn = admin_connect(name)
    apply_migrations(conn, "keystore")
    store = KeyStore(connect=lambda: admin_connect(name))
    store.database = name
    previous = set_default_keystore(store)
    yield store
    set_default_keystore(previous)
    store.close()
