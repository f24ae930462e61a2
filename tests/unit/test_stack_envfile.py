"""Env file rendering, parsing and validation (no services needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paydata import privileges, settings
from paydata.stack import StackConfig, StackError, envfile

PASSWORDS = {"reference_owner": "r-pw", "oltp_owner": "o'pw", "warehouse_owner": "w-pw", "paydata_cdc": "c-pw",
             "paydata_keystore": "k-pw", **{user.name: f"{user.name}-pw" for user in privileges.LOGIN_USERS}}
AIRFLOW_SECRETS = {"fernet_key": "f", "jwt_secret": "j", "api_secret_key": "a"}
MONGO_PASSWORDS = {user: f"{user}-pw/+:@" for user in settings.MONGO_USERS.values()}


def config(tmp_path: Path) -> StackConfig:
    return StackConfig(state_dir=tmp_path, pg_port=61000, mongo_port=61001)


def test_tls_connections_have_the_documented_shape(tmp_path):
    values = envfile.build_env(config(tmp_path), True, PASSWORDS, AIRFLOW_SECRETS, MONGO_PASSWORDS)
    assert json.loads(values["AIRFLOW_CONN_PAYDATA_OLTP"]) == {
        "conn_type": "postgres", "host": "localhost", "port": 61000, "login": "oltp_owner", "password": "o'pw",
        "schema": "oltp", "extra": {"sslmode": "verify-full", "sslrootcert": str(tmp_path / "tls" / "ca.crt")},
    }
    # Capture sits beside the database: its sessions use the Unix socket (no network to cross).
    cdc = json.loads(values["AIRFLOW_CONN_PAYDATA_CDC_REFERENCE"])
    assert (cdc["login"], cdc["schema"], cdc["host"], cdc["extra"]) == (
        "paydata_cdc", "reference", str(tmp_path / "pg" / "run"), {})
    assert "AIRFLOW_CONN_PAYDATA_CDC_WAREHOUSE" not in values
    for conn_id, user in settings.MONGO_USERS.items():
        assert json.loads(values["AIRFLOW_CONN_" + conn_id.upper()]) == {
            "conn_type": "mongo", "host": "127.0.0.1", "port": 61001, "login": user,
            "password": MONGO_PASSWORDS[user], "schema": "paydata",
            "extra": {"tls": True, "tlsCAFile": str(tmp_path / "tls" / "ca.crt"), "authSource": "admin",
                      "directConnection": True}}
    assert values["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert values["AIRFLOW__CORE__DAGS_FOLDER"] == str(settings.REPO_ROOT / "dags")
    assert values["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(settings.REPO_ROOT / "plugins")
    assert values["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path}/airflow/airflow.db"
    assert values["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert values["PAYDATA_KEK_FILE"] == str(tmp_path / "secrets" / "kek")
    assert values["PAYDATA_TOKEN_KEY_FILE"] == str(tmp_path / "secrets" / "token_key")
    assert values["PAYDATA_STACK_DIR"] == str(tmp_path)


def test_socket_only_connections_point_at_the_socket_dir(tmp_path):
    values = envfile.build_env(config(tmp_path), False, PASSWORDS, AIRFLOW_SECRETS, MONGO_PASSWORDS)
    conn = json.loads(values["AIRFLOW_CONN_PAYDATA_WAREHOUSE"])
    assert conn["host"] == str(tmp_path / "pg" / "run") and conn["extra"] == {}


def test_render_round_trips_through_settings_parser(tmp_path, monkeypatch):
    values = envfile.build_env(config(tmp_path), True, PASSWORDS, AIRFLOW_SECRETS, MONGO_PASSWORDS)
    values["TRICKY"] = "it's a \"quoted\" $HOME `x` value"
    path = tmp_path / "paydata.env"
    envfile.write(path, values)
    assert path.stat().st_mode & 0o777 == 0o600
    assert settings.parse_env_file(path) == values
    assert envfile.check(path) == values
    monkeypatch.setenv("AIRFLOW_CONN_PAYDATA_OLTP", values["AIRFLOW_CONN_PAYDATA_OLTP"])
    conn = settings.connection("paydata_oltp")
    assert conn.psycopg2_kwargs()["sslmode"] == "verify-full" and conn.password == "o'pw"


@pytest.mark.parametrize("key, value, message", [
    ("lower", "x", "invalid environment variable name"),
    ("BAD KEY", "x", "invalid environment variable name"),
    ("GOOD", "two\nlines", "line break"),
])
def test_render_rejects_bad_input(key, value, message):
    with pytest.raises(ValueError, match=message):
        envfile.render({key: value})


def test_check_reports_corruption(tmp_path):
    path = tmp_path / "paydata.env"
    with pytest.raises(StackError, match="does not exist"):
        envfile.check(path)
    path.write_text("this is not an env file\n")
    with pytest.raises(StackError, match="corrupted.*paydata.stack up"):
        envfile.check(path)
    path.write_text("AIRFLOW_HOME='/x'\n")
    with pytest.raises(StackError, match="lacks .*AIRFLOW_CONN_PAYDATA_OLTP"):
        envfile.check(path)
    values = envfile.build_env(config(tmp_path), True, PASSWORDS, AIRFLOW_SECRETS, MONGO_PASSWORDS)
    values["AIRFLOW_CONN_PAYDATA_OLTP"] = "{not json"
    envfile.write(path, values)
    with pytest.raises(StackError, match="AIRFLOW_CONN_PAYDATA_OLTP is not valid JSON"):
        envfile.check(path)
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(StackError, match="corrupted"):
        envfile.check(path)
