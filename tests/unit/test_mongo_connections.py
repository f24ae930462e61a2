"""MongoDB connection ids, URIs and the users and roles of ``paydata.mongo_access`` (no server)."""

from __future__ import annotations

import ast
import json
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from paydata import mongo_access, settings
from paydata.healthcheck import HealthCheckError, check_mongo_login

CA = "/stack/tls/ca.crt"


def local_connection(**overrides) -> settings.Connection:
    values = {"conn_id": "paydata_mongo_cdc", "conn_type": "mongo", "host": "127.0.0.1", "port": 57017,
              "login": "paydata_cdc", "password": "p@ss:w/rd+1", "schema": "paydata",
              "extra": {"tls": True, "tlsCAFile": CA, "authSource": "admin", "directConnection": True}}
    return settings.Connection(**{**values, **overrides})


def test_connection_ids_and_users_are_the_documented_ones():
    assert settings.MONGO_USERS == {
        "paydata_mongo": "paydata_admin",
        "paydata_mongo_cdc": "paydata_cdc",
        "paydata_mongo_ingest": "paydata_ingest",
        "paydata_mongo_features": "paydata_features",
        "paydata_mongo_analyst": "paydata_analyst",
        "paydata_mongo_backup": "paydata_backup",
        "paydata_mongo_scorer": "paydata_scorer",
    }
    assert (settings.MONGO_CONN_ID, settings.MONGO_CDC_CONN_ID, settings.MONGO_INGEST_CONN_ID,
            settings.MONGO_FEATURES_CONN_ID, settings.MONGO_ANALYST_CONN_ID,
            settings.MONGO_BACKUP_CONN_ID, settings.MONGO_SCORER_CONN_ID) == tuple(settings.MONGO_USERS)


def test_uri_carries_quoted_credentials_and_every_tls_and_auth_option():
    uri = local_connection().mongo_uri()
    parts = urlsplit(uri)
    assert parts.scheme == "mongodb" and parts.hostname == "127.0.0.1" and parts.port == 57017
    assert (unquote(parts.username), unquote(parts.password)) == ("paydata_cdc", "p@ss:w/rd+1")
    assert parse_qs(parts.query) == {"tls": ["true"], "tlsCAFile": [CA], "authSource": ["admin"],
                                     "directConnection": ["true"]}


@pytest.fixture
def ca_file(tmp_path) -> str:
    from paydata.stack.tls import generate_ca

    path = tmp_path / "ca.crt"
    path.write_bytes(generate_ca().cert_pem())
    return str(path)


def test_pymongo_reads_the_uri_as_meant(ca_file):
    from pymongo import MongoClient

    conn = local_connection(extra={**local_connection().extra, "tlsCAFile": ca_file})
    client = MongoClient(conn.mongo_uri(), connect=False)
    try:
        options = client.options
        assert options.pool_options._ssl_context is not None
        assert options.pool_options._credentials.username == "paydata_cdc"
        assert options.pool_options._credentials.password == "p@ss:w/rd+1"
        assert options.pool_options._credentials.source == "admin"
        assert options.direct_connection is True
    finally:
        client.close()


def test_replica_set_connections_do_not_force_a_direct_connection():
    uri = local_connection(extra={"replicaSet": "rs0", "tls": True, "tlsCAFile": CA}).mongo_uri()
    assert parse_qs(urlsplit(uri).query) == {"replicaSet": ["rs0"], "tls": ["true"], "tlsCAFile": [CA]}
    assert settings.Connection("m", "mongo", "h", 1).mongo_uri() == "mongodb://h:1/?directConnection=true"
    assert local_connection(extra={"uri": "mongodb://x/"}).mongo_uri() == "mongodb://x/"
    assert local_connection().mongo_tls and not local_connection(extra={}).mongo_tls


def test_mongo_hook_builds_the_same_client_from_the_json_connection(monkeypatch, ca_file):
    pytest.importorskip("airflow.providers.mongo")
    from airflow.providers.mongo.hooks.mongo import MongoHook

    conn = local_connection(extra={**local_connection().extra, "tlsCAFile": ca_file})
    monkeypatch.setenv("AIRFLOW_CONN_PAYDATA_MONGO_CDC", json.dumps(
        {"conn_type": "mongo", "host": conn.host, "port": conn.port, "login": conn.login,
         "password": conn.password, "schema": conn.schema, "extra": conn.extra}))
    hook = MongoHook(mongo_conn_id="paydata_mongo_cdc")
    client = hook.get_conn()
    try:
        assert client.options.pool_options._ssl_context is not None
        assert client.options.pool_options._credentials.username == "paydata_cdc"
        assert client.options.pool_options._credentials.password == "p@ss:w/rd+1"
        assert client.options.pool_options._credentials.source == "admin"
        assert hook.allow_insecure is False
    finally:
        hook.close()


def test_every_consumer_has_a_role_and_only_the_admin_and_backup_have_built_in_ones():
    bindings = mongo_access.user_roles()
    assert set(bindings) == set(settings.MONGO_USERS.values())
    assert bindings["paydata_admin"] == [{"role": "dbAdmin", "db": "paydata"}, {"role": "readWrite", "db": "paydata"}]
    # Backups read paydata and write nothing but the restore drill's scratch database.
    assert bindings["paydata_backup"] == [{"role": "read", "db": "paydata"},
                                          {"role": "readWrite", "db": "restore_drill_paydata"},
                                          {"role": "dbAdmin", "db": "restore_drill_paydata"}]
    custom = mongo_access.roles()
    for user, roles in bindings.items():
        if user not in {"paydata_admin", "paydata_backup"}:
            assert [binding["db"] for binding in roles] == ["admin"]
            assert {binding["role"] for binding in roles} <= set(custom)


def privileges_of(role: str) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for privilege in mongo_access.roles()[role]:
        assert privilege["resource"]["db"] == "paydata"
        result.setdefault(privilege["resource"]["collection"], set()).update(privilege["actions"])
    return result


def test_roles_name_collections_and_never_grant_ddl_or_user_management():
    forbidden = {"dropCollection", "dropDatabase", "createIndex", "dropIndex", "collMod", "createCollection",
                 "createUser", "grantRole", "createRole", "bypassDocumentValidation", "anyAction"}
    for role in mongo_access.roles():
        privileges = privileges_of(role)
        # listing collection names is the only database-wide action (the scorer does not even need it)
        assert privileges.pop("", {"listCollections"}) == {"listCollections"}, role
        for collection, actions in privileges.items():
            assert collection, role
            assert not actions & forbidden, (role, collection)


def test_writers_write_only_their_collections_and_the_analyst_only_reads():
    writes = {"insert", "update", "remove"}

    def writable(role: str) -> set[str]:
        return {name for name, actions in privileges_of(role).items() if actions & writes}

    assert writable("paydata_cdc_writer") == set(mongo_access.CDC_COLLECTIONS)
    assert writable("paydata_ingest_writer") == set(mongo_access.INGEST_COLLECTIONS)
    assert writable("paydata_features_rw") == {"features", "feature_offsets"}
    assert writable("paydata_analyst_read") == set()
    assert writable("paydata_scorer_read") == set()
    assert privileges_of("paydata_scorer_read") == {"features": {"find", "listIndexes", "killCursors"},
                                                    "sessions": {"find", "listIndexes", "killCursors"}}
    assert not set(mongo_access.CDC_COLLECTIONS) & set(mongo_access.INGEST_COLLECTIONS)
    analyst = set(privileges_of("paydata_analyst_read")) - {""}
    assert "quarantine" not in analyst and "cdc_offsets" not in analyst
    features_reads = set(privileges_of("paydata_features_rw")) - {"", "features", "feature_offsets"}
    assert features_reads == {"sessions", "telemetry", "feedback", "payments"}


class FakeAdmin:
    """The ``admin`` database as ensure_access uses it: records the commands it runs."""

    def __init__(self, roles=(), users=()):
        self.roles = {role["role"]: role for role in roles}
        self.users = {user["user"]: user for user in users}
        self.commands: list[tuple[str, str]] = []

    def command(self, name, value, **kwargs):
        if name == "rolesInfo":
            return {"roles": list(self.roles.values())}
        if name == "usersInfo":
            return {"users": list(self.users.values())}
        self.commands.append((name, value))
        if name in ("createRole", "updateRole"):
            self.roles[value] = {"role": value, "privileges": kwargs["privileges"], "roles": kwargs["roles"]}
        elif name == "createUser":
            self.users[value] = {"user": value, "roles": kwargs["roles"]}
        elif name == "updateUser" and "roles" in kwargs:
            self.users[value]["roles"] = kwargs["roles"]
        return {"ok": 1}


def test_ensure_access_creates_everything_once_then_changes_nothing():
    admin = FakeAdmin()
    passwords = {user: "pw" for user in settings.MONGO_USERS.values()}
    first = mongo_access.ensure_access(admin, passwords, lambda user, password: True)
    assert sorted(first) == sorted([f"created role {role}" for role in mongo_access.roles()]
                                   + [f"created user {user}" for user in settings.MONGO_USERS.values()])
    assert mongo_access.ensure_access(admin, passwords, lambda user, password: True) == []


def test_ensure_access_repairs_a_widened_role_changed_bindings_and_a_changed_password():
    admin = FakeAdmin()
    passwords = {user: "pw" for user in settings.MONGO_USERS.values()}
    mongo_access.ensure_access(admin, passwords, lambda user, password: True)
    admin.roles["paydata_analyst_read"]["privileges"].append(
        {"resource": {"db": "paydata", "collection": "payments"}, "actions": ["insert"]})
    admin.users["paydata_ingest"]["roles"] = [{"role": "root", "db": "admin"}]
    changes = mongo_access.ensure_access(admin, passwords, lambda user, password: user != "paydata_cdc")
    assert sorted(changes) == ["updated pwd of user paydata_cdc", "updated role paydata_analyst_read",
                               "updated roles of user paydata_ingest"]


def test_ensure_access_needs_every_password():
    with pytest.raises(KeyError):
        mongo_access.ensure_access(FakeAdmin(), {}, lambda user, password: True)


class FakeClient:
    def __init__(self, users):
        self.admin = self
        self.users = users

    def command(self, name):
        assert name == "connectionStatus"
        return {"authInfo": {"authenticatedUsers": self.users,
                             "authenticatedUserRoles": [{"role": "paydata_cdc_writer", "db": "admin"}]}}


def test_healthcheck_requires_a_login_and_verified_tls():
    user = [{"user": "paydata_cdc", "db": "admin"}]
    assert check_mongo_login(FakeClient(user), {"tls": True, "tlsCAFile": CA}) == {
        "user": "paydata_cdc@admin", "roles": ["paydata_cdc_writer@admin"], "tls": True}
    with pytest.raises(HealthCheckError, match="not authenticated"):
        check_mongo_login(FakeClient([]), {"tls": True})
    with pytest.raises(HealthCheckError, match="does not ask for TLS"):
        check_mongo_login(FakeClient(user), {})
    with pytest.raises(HealthCheckError, match="certificate checks off"):
        check_mongo_login(FakeClient(user), {"tls": True, "tlsAllowInvalidCertificates": True})


def test_the_healthcheck_dag_checks_every_mongo_connection():
    tree = ast.parse((settings.REPO_ROOT / "dags" / "platform_healthcheck.py").read_text())
    assigned = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}
    assert assigned["MONGO_CONN_IDS"] == [conn_id for conn_id in settings.MONGO_USERS
                                          if conn_id not in settings.SERVICE_MONGO_CONN_IDS]
