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


@pytest.fixture(scope="session")
def scoring_world(stack, admin_connect, tmp_path_factory):
    """A trained ``fraud_scoring`` champion on generated history (:func:`ml.serving.sample.prepare`):
    its own warehouse database, Mongo database (online documents) and MLflow store, shared by the
    scorer's tests and dropped at the end of the session."""
    import os

    import mlflow

    from ml.serving import sample
    from paydata.stack import mongo_root_client
    from paydata.stack.config import PG_SUPERUSER
    from paydata.stack.postgres import sql_statement
    from tests.staging_layout import create_staging_layout

    admin = admin_connect("postgres")
    admin.autocommit = True
    name = _unique_name("scoring")
    with admin.cursor() as cursor:
        cursor.execute(sql_statement("create_database", database=name, owner=PG_SUPERUSER))
    conn = admin_connect(name)
    create_staging_layout(conn, admin_connect)
    client = mongo_root_client(stack, serverSelectionTimeoutMS=5000)
    database = client[_unique_name("t")]
    folder = tmp_path_factory.mktemp("scoring_mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    previous = os.environ.get("PAYDATA_MLFLOW_ARTIFACTS")
    os.environ["PAYDATA_MLFLOW_ARTIFACTS"] = str(folder / "artifacts")
    mlflow.set_tracking_uri(uri)
    try:
        world = sample.prepare(conn, database, uri)
        world.update(conn=conn, database=database, tracking_uri=uri, dbname=name)
        yield world
    finally:
        if previous is None:
            os.environ.pop("PAYDATA_MLFLOW_ARTIFACTS", None)
        else:
            os.environ["PAYDATA_MLFLOW_ARTIFACTS"] = previous
        conn.close()
        client.drop_database(database.name)
        client.close()
        with admin.cursor() as cursor:
            cursor.execute(sql_statement("drop_database_force", database=name))


@pytest.fixture
def scorer_factory(tmp_path):
    """``scorer_factory(tracking_uri, definitions, database, poll=False, poll_seconds=10,
    timeout_seconds=0.5)`` -> an object with ``app`` (FastAPI, the real scorer of the
    ``fraud_scoring`` champion in that MLflow store, reading online documents from the Mongo
    ``database``), ``holder``, ``metrics``, ``store`` and ``key`` (a valid API key; the keys file
    holds only its hash)."""
    import secrets
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient

    from ml.serving import auth
    from ml.serving.app import create_app
    from ml.serving.feature_store import OnlineFeatureStore
    from ml.serving.metrics import ScorerMetrics
    from ml.serving.reloader import ModelHolder
    from ml.serving.scorer import Scorer

    def _make(tracking_uri, definitions, database, poll=False, poll_seconds=10.0, timeout_seconds=0.5):
        key = secrets.token_urlsafe(32)
        keys_file = tmp_path / f"keys-{secrets.token_hex(4)}"
        keys_file.write_text(f"# callers\n{auth.key_line('tests', key)}\n")
        metrics = ScorerMetrics()
        holder = ModelHolder(MlflowClient(tracking_uri), name="fraud_scoring", alias="champion",
                             model_features=definitions.model_features, metrics=metrics, poll_seconds=poll_seconds)
        store = OnlineFeatureStore(database, timeout_seconds=timeout_seconds)
        app = create_app(holder=holder, scorer=Scorer(definitions, store, metrics),
                         keys=auth.ApiKeys.from_file(keys_file), poll=poll)
        return SimpleNamespace(app=app, holder=holder, metrics=metrics, key=key, store=store)

    return _make


@pytest.fixture
def scoring_app(scoring_world, scorer_factory):
    """``scoring_app(database=None, poll=False, poll_seconds=10, timeout_seconds=0.5)`` -> the real
    scorer over ``scoring_world`` (see ``scorer_factory``)."""

    def _make(database=None, poll=False, poll_seconds=10.0, timeout_seconds=0.5):
        return scorer_factory(scoring_world["tracking_uri"], scoring_world["definitions"],
                              scoring_world["database"] if database is None else database,
                              poll=poll, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds)

    return _make
