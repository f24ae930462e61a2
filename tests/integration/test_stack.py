"""The local stack against real Postgres and SecantusDB processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psycopg2
import pytest

from paydata import settings
from paydata.stack import (
    StackConfig,
    StackError,
    admin_connect,
    ensure_up,
    mongo_root_client,
    shutdown,
    status,
)
from paydata.stack import mongo as stack_mongo
from paydata.stack import postgres as stack_postgres
from paydata.stack.system import pid_alive, wait_until

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def traversable_tmp_dir(prefix: str) -> Path:
    # Under /tmp with 0755 so the unprivileged Postgres user can reach it (pytest's tmp_path is 0700).
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def stack_cli(config: StackConfig, *args: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PAYDATA_STACK_DIR": str(config.state_dir), "PAYDATA_PG_PORT": str(config.pg_port),
           "PAYDATA_MONGO_PORT": str(config.mongo_port), **env_overrides}
    return subprocess.run([sys.executable, "-m", "paydata.stack", *args], env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def row(config: StackConfig, service: str) -> dict:
    return next(r for r in status(config) if r["service"] == service)


@pytest.fixture(scope="module")
def second_stack():
    """An independent stack in a temporary folder on free ports (Postgres + SecantusDB)."""
    config = StackConfig(state_dir=traversable_tmp_dir("paydata-stack-"), pg_port=free_port(),
                         mongo_port=free_port())
    try:
        ensure_up(config, services="postgres,mongo", export_env=False)
        yield config
    finally:
        shutdown(config)
        shutil.rmtree(config.state_dir, ignore_errors=True)


def second_stack_connection(config: StackConfig, conn_id: str) -> settings.Connection:
    values = settings.parse_env_file(config.env_file)
    data = json.loads(values["AIRFLOW_CONN_" + conn_id.upper()])
    return settings.Connection(conn_id=conn_id, conn_type=data["conn_type"], host=data["host"],
                               port=data.get("port"), login=data.get("login"), password=data.get("password"),
                               schema=data.get("schema"), extra=data.get("extra") or {})


# --- default stack: TLS and configuration -------------------------------------------------------


def test_plaintext_tcp_is_refused(stack):
    oltp = settings.connection(settings.OLTP_CONN_ID)
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        psycopg2.connect(**oltp.psycopg2_kwargs(sslmode="disable", host="127.0.0.1"))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_tls12_client_is_refused_and_tls13_negotiates(stack):
    def s_client(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["openssl", "s_client", "-starttls", "postgres", *flags, "-CAfile", str(stack.ca_cert),
             "-verify_return_error", "-verify_hostname", "localhost", "-connect", f"127.0.0.1:{stack.pg_port}"],
            input="", capture_output=True, text=True, timeout=20, check=False,
        )

    capped = s_client("-tls1_2")
    assert capped.returncode != 0
    assert "protocol version" in capped.stderr + capped.stdout
    modern = s_client("-tls1_3")
    assert modern.returncode == 0, modern.stderr
    assert "TLSv1.3" in modern.stdout


def test_verify_full_with_generated_ca_reports_tls13(stack):
    oltp = settings.connection(settings.OLTP_CONN_ID)
    assert oltp.extra == {"sslmode": "verify-full", "sslrootcert": str(stack.ca_cert)}
    with settings.pg_connect(settings.OLTP_CONN_ID) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT version, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cursor.fetchone() == ("TLSv1.3", True)
        cursor.execute("SELECT current_user, current_database()")
        assert cursor.fetchone() == ("oltp_owner", "oltp")
    conn.close()


def test_verify_full_rejects_a_foreign_ca(stack, tmp_path):
    from paydata.stack.tls import generate_ca

    foreign = tmp_path / "foreign-ca.crt"
    foreign.write_bytes(generate_ca("someone else").cert_pem())
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        settings.pg_connect(settings.OLTP_CONN_ID, sslrootcert=str(foreign))


def test_server_settings(stack, admin_connect):
    conn = admin_connect()
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
            (["wal_level", "max_replication_slots", "max_wal_senders", "max_slot_wal_keep_size", "ssl",
              "ssl_min_protocol_version", "password_encryption", "log_connections", "log_disconnections",
              "listen_addresses"],),
        )
        values = dict(cursor.fetchall())
    assert values["wal_level"] == "logical"
    assert values["max_replication_slots"] == values["max_wal_senders"] == "16"
    assert values["max_slot_wal_keep_size"] == "4096"  # MB
    assert values["ssl"] == "on" and values["ssl_min_protocol_version"] == "TLSv1.3"
    assert values["password_encryption"] == "scram-sha-256"
    assert values["log_connections"] == values["log_disconnections"] == "on"
    assert values["listen_addresses"] == "127.0.0.1"


def test_databases_roles_and_connect_privileges(stack, admin_connect):
    from paydata.stack.config import PG_CDC_ROLE, PG_SUPERUSER

    password = (stack.password_file(PG_SUPERUSER)).read_text().strip()
    assert stack_postgres.database_owners(stack, password) == settings.DATABASE_OWNERS
    conn = admin_connect()
    with conn.cursor() as cursor:
        cursor.execute("SELECT rolcanlogin, rolreplication, rolsuper FROM pg_roles WHERE rolname = %s",
                       (PG_CDC_ROLE,))
        assert cursor.fetchone() == (True, True, False)
        cursor.execute("SELECT has_database_privilege('public', 'warehouse', 'CONNECT')")
        assert cursor.fetchone() == (False,)
    # The CDC role reaches the sources but PUBLIC no longer grants it the warehouse.
    cdc = settings.connection("paydata_cdc_oltp")
    psycopg2.connect(**cdc.psycopg2_kwargs()).close()
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        psycopg2.connect(**cdc.psycopg2_kwargs(dbname="warehouse"))
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(**cdc.psycopg2_kwargs(password="wrong"))


def test_airflow_hooks_accept_the_json_connections(stack):
    import uuid

    from airflow.providers.mongo.hooks.mongo import MongoHook
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=settings.WAREHOUSE_CONN_ID)
    conn = hook.get_conn()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT current_user, (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid())")
            assert cursor.fetchone() == ("warehouse_owner", "TLSv1.3")
    finally:
        conn.close()
    # MongoHook reads login, password and the TLS/auth options of the extra: each user logs in over TLS.
    for conn_id, user in settings.MONGO_USERS.items():
        with MongoHook(mongo_conn_id=conn_id) as mongo_hook:
            status_doc = mongo_hook.get_conn().admin.command("connectionStatus")
            assert status_doc["authInfo"]["authenticatedUsers"] == [{"user": user, "db": "admin"}], conn_id
            assert mongo_hook.get_conn().options.pool_options._ssl_context is not None, conn_id
    probe = f"probe_{uuid.uuid4().hex[:8]}"
    with MongoHook(mongo_conn_id=settings.MONGO_CONN_ID) as mongo_hook:
        database = mongo_hook.get_conn()[mongo_hook.connection.schema]
        try:
            database[probe].insert_one({"via": "hook"})
            assert database[probe].find_one({}, {"_id": 0}) == {"via": "hook"}
        finally:
            database.drop_collection(probe)


def test_fixtures_give_isolated_database_and_collection(fresh_database, admin_connect, mongo_db):
    name = fresh_database("probe", owner="oltp_owner")
    conn = admin_connect(name)
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
        assert cursor.fetchone() == ("oltp_owner",)
    conn.close()
    mongo_db.items.insert_one({"k": 1})
    assert mongo_db.items.count_documents({}) == 1
    with pytest.raises(ValueError, match="prefix"):
        fresh_database("Bad-Prefix")


def test_up_on_a_running_stack_is_fast_and_harmless(stack):
    before = {r["service"]: r["pid"] for r in status(stack)}
    started = time.monotonic()
    result = stack_cli(stack, "up")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15
    after = {r["service"]: r["pid"] for r in status(stack)}
    assert after == before
    assert all(r["health"] in ("healthy", "ready") for r in status(stack))


# --- second stack: persistence, crash recovery, errors ---------------------------------------------


def test_second_stack_is_independent_and_keeps_data_across_down_up(second_stack, stack):
    config = second_stack
    assert config.pg_port != stack.pg_port and config.mongo_port != stack.mongo_port
    conn = admin_connect("oltp", config=config)
    with conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS persisted (note text)")
        cursor.execute("INSERT INTO persisted VALUES (%s)", ("survives restart",))
    conn.close()
    with mongo_root_client(config, serverSelectionTimeoutMS=5000) as mongo_client:
        mongo_client.paydata.persisted.insert_one({"note": "survives restart"})

    assert sorted(shutdown(config)) == ["mongo", "postgres"]
    assert row(config, "postgres")["health"] == "stopped"
    assert row(config, "mongo")["health"] == "stopped"
    assert shutdown(config) == []

    ensure_up(config, services="postgres,mongo", export_env=False)
    conn = admin_connect("oltp", config=config)
    with conn, conn.cursor() as cursor:
        cursor.execute("SELECT note FROM persisted")
        assert cursor.fetchall() == [("survives restart",)]
    conn.close()
    with mongo_root_client(config, serverSelectionTimeoutMS=5000) as mongo_client:
        assert mongo_client.paydata.persisted.find_one({}, {"_id": 0}) == {"note": "survives restart"}


def test_up_restarts_a_secantus_started_before_access_control_with_auth_and_tls():
    """A stack from before access control ran SecantusDB without --auth and TLS: `up` restarts it with
    both, creates the administrator and the users, and keeps the data."""
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure

    state_dir = traversable_tmp_dir("paydata-stack-upgrade-")
    config = StackConfig(state_dir=state_dir, pg_port=free_port(), mongo_port=free_port())
    try:
        config.mongo_data.mkdir(parents=True)
        (config.mongo_dir / "secantusd.toml").touch()
        old_command = stack_mongo.command(config)[:11]  # python -m secantus --config, --host, --port, --storage-path
        assert "--auth" not in old_command and not any(arg.startswith("--tls") for arg in old_command)
        with open(config.mongo_log, "ab") as log:
            old = subprocess.Popen(old_command, stdout=log, stderr=subprocess.STDOUT, cwd=config.mongo_dir,
                                   start_new_session=True)
        config.mongo_pid_file.write_text(f"{old.pid}\n")
        plain = f"mongodb://127.0.0.1:{config.mongo_port}/?directConnection=true"
        assert wait_until(lambda: _answers(plain), 30)
        with MongoClient(plain, serverSelectionTimeoutMS=5000) as client:
            client.paydata.legacy.insert_one({"note": "from before auth"})

        ensure_up(config, services="mongo", export_env=False)
        assert not pid_alive(old.pid) or old.poll() is not None
        assert "--auth" in stack_mongo.process_cmdline(stack_mongo.running_pid(config))
        with MongoClient(stack_mongo.uri(config), serverSelectionTimeoutMS=5000) as anonymous:
            with pytest.raises(OperationFailure) as refused:
                anonymous.paydata.legacy.find_one()
            assert refused.value.code == 13
        with mongo_root_client(config, serverSelectionTimeoutMS=5000) as root:
            assert root.paydata.legacy.find_one({}, {"_id": 0}) == {"note": "from before auth"}
            users = {user["user"] for user in root.admin.command("usersInfo")["users"]}
        assert users == {"paydata_root", *settings.MONGO_USERS.values()}
        # A second `up` changes nothing and keeps the server running.
        pid = stack_mongo.running_pid(config)
        ensure_up(config, services="mongo", export_env=False)
        assert stack_mongo.running_pid(config) == pid
    finally:
        shutdown(config)
        shutil.rmtree(state_dir, ignore_errors=True)


def _answers(uri: str) -> bool:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    try:
        with MongoClient(uri, serverSelectionTimeoutMS=500) as client:
            return client.admin.command("ping")["ok"] == 1
    except PyMongoError:
        return False


def test_stale_pids_after_kill_9_are_recovered(second_stack):
    config = second_stack
    pg_pid = stack_postgres.running_pid(config)
    mongo_pid = stack_mongo.running_pid(config)
    assert pg_pid and mongo_pid
    os.kill(pg_pid, signal.SIGKILL)
    os.kill(mongo_pid, signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(pg_pid) and not pid_alive(mongo_pid), 10)
    assert (config.pg_data / "postmaster.pid").exists() and config.mongo_pid_file.exists()
    assert "stale" in row(config, "postgres")["notes"]
    assert "stale" in row(config, "mongo")["notes"]

    ensure_up(config, services="postgres,mongo", export_env=False)
    assert row(config, "postgres")["health"] == "healthy"
    assert row(config, "mongo")["health"] == "healthy"
    assert stack_postgres.running_pid(config) not in (None, pg_pid)
    assert stack_mongo.running_pid(config) not in (None, mongo_pid)


def test_up_applies_changed_settings_to_a_running_cluster(second_stack):
    """A reloadable setting takes effect by reload; one that needs a restart makes `up` restart."""
    config = second_stack
    password = config.password_file(stack_postgres.PG_SUPERUSER).read_text().strip()

    def show(name: str) -> str:
        conn = stack_postgres.connect(config, password)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SHOW " + name)  # name is a literal from this test
                return cursor.fetchone()[0]
        finally:
            conn.close()

    def alter_system(statement: str) -> None:
        conn = stack_postgres.connect(config, password)
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement)
        finally:
            conn.close()

    pid_before = stack_postgres.running_pid(config)
    alter_system("ALTER SYSTEM SET shared_buffers = '256MB'")
    try:
        ensure_up(config, services="postgres", export_env=False)
        assert show("shared_buffers") == "256MB"
        assert stack_postgres.running_pid(config) != pid_before
    finally:
        alter_system("ALTER SYSTEM RESET shared_buffers")
        ensure_up(config, services="postgres", export_env=False)
    assert show("shared_buffers") == "512MB"


def test_corrupted_env_file_is_reported_and_regenerated(second_stack):
    config = second_stack
    original = settings.parse_env_file(config.env_file)
    config.env_file.write_text("AIRFLOW_HOME='/x'\nthis line is garbage\n")
    assert row(config, "env")["health"] == "corrupted"
    result = stack_cli(config, "status")
    assert result.returncode != 0
    assert "corrupted" in result.stdout and "paydata.stack up" in result.stdout

    result = stack_cli(config, "up", "--only", "postgres,mongo")
    assert result.returncode == 0, result.stderr
    assert settings.parse_env_file(config.env_file) == original
    assert row(config, "env")["health"] == "ready"


def test_taken_port_gives_clear_error(second_stack):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    state_dir = traversable_tmp_dir("paydata-stack-port-")
    try:
        config = StackConfig(state_dir=state_dir, pg_port=taken, mongo_port=free_port())
        with pytest.raises(StackError, match=rf"127\.0\.0\.1:{taken} is already taken.*PAYDATA_PG_PORT"):
            ensure_up(config, services="postgres", export_env=False)
        assert not (config.pg_data / "PG_VERSION").exists()
        config = StackConfig(state_dir=state_dir, pg_port=free_port(), mongo_port=taken)
        result = stack_cli(config, "up", "--only", "mongo")
        assert result.returncode != 0
        assert f"127.0.0.1:{taken} is already taken" in result.stderr
        assert "PAYDATA_MONGO_PORT" in result.stderr
    finally:
        squatter.close()
        shutdown(StackConfig(state_dir=state_dir))
        shutil.rmtree(state_dir, ignore_errors=True)


def test_missing_binaries_give_clear_error(tmp_path):
    config = StackConfig(state_dir=tmp_path / "stack", pg_binaries=str(tmp_path / "no-such-bin"))
    with pytest.raises(StackError, match="Postgres binaries not found.*PAYDATA_PG_BINARIES=embedded"):
        ensure_up(config, services="postgres", export_env=False)
    result = stack_cli(config, "up", PAYDATA_PG_BINARIES=str(tmp_path / "no-such-bin"))
    assert result.returncode != 0
    assert "Postgres binaries not found" in result.stderr


def test_unreachable_state_dir_gives_clear_error():
    if os.geteuid() != 0:
        pytest.skip("only root runs Postgres as a different OS user")
    locked = Path(tempfile.mkdtemp(prefix="paydata-locked-", dir="/tmp"))  # 0700, root-owned
    try:
        config = StackConfig(state_dir=locked / "stack", pg_port=free_port(), mongo_port=free_port())
        with pytest.raises(StackError, match=rf"cannot enter {locked}.*PAYDATA_STACK_DIR"):
            ensure_up(config, services="postgres", export_env=False)
    finally:
        shutil.rmtree(locked, ignore_errors=True)


# --- embedded fallback -------------------------------------------------------------------------------


def test_embedded_binaries_serve_the_unix_socket_only():
    state_dir = traversable_tmp_dir("paydata-stack-embedded-")
    config = StackConfig(state_dir=state_dir, pg_port=free_port(), mongo_port=free_port(), pg_binaries="embedded")
    try:
        ensure_up(config, services="postgres", export_env=False)
        postgres_row = row(config, "postgres")
        assert postgres_row["health"] == "healthy"
        assert "unix socket only" in postgres_row["notes"]
        assert postgres_row["endpoint"] == str(config.pg_socket_dir)

        oltp = second_stack_connection(config, settings.OLTP_CONN_ID)
        assert oltp.host == str(config.pg_socket_dir) and oltp.extra == {}
        with psycopg2.connect(**oltp.psycopg2_kwargs()) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT current_user, current_setting('listen_addresses'), current_setting('ssl'), "
                           "current_setting('server_version_num')::int >= 180000")
            assert cursor.fetchone() == ("oltp_owner", "", "off", True)
        conn.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", config.pg_port), timeout=2)
    finally:
        shutdown(config)
        shutil.rmtree(state_dir, ignore_errors=True)


# --- Airflow home --------------------------------------------------------------------------------------


def test_airflow_dags_test_runs_with_the_stack_env():
    state_dir = traversable_tmp_dir("paydata-stack-airflow-")
    config = StackConfig(state_dir=state_dir, pg_port=free_port(), mongo_port=free_port())
    dags = state_dir / "dags"
    dags.mkdir()
    (dags / "stack_probe.py").write_text(textwrap.dedent("""
        import pendulum
        from airflow.sdk import dag, task

        @dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
        def stack_probe():
            @task
            def answer():
                return 42

            answer()

        stack_probe()
    """))
    try:
        ensure_up(config, services="airflow,mlflow", export_env=False)
        assert row(config, "airflow")["health"] == "ready"
        assert row(config, "mlflow")["health"] == "ready"
        env = {**os.environ, **settings.parse_env_file(config.env_file), "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
        result = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "stack_probe"], env=env,
                                capture_output=True, text=True, timeout=300, check=False)
        output = result.stdout + result.stderr
        assert "python -m paydata." not in output, (
            "Airflow's plugin loader imported a paydata/**/__main__.py as module '__main__' and ran its CLI; "
            "plugins/.airflowignore must list 'paydata/' (the package is imported normally, not as plugins)"
        )
        assert result.returncode == 0, output[-3000:]
        assert "Returned value was: 42" in output
        assert "state=success" in output
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
