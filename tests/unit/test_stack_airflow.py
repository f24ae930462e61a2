"""Scheduled mode settings: a login for everyone, the API on 127.0.0.1, tasks told the port the API
server really listens on, and a state folder the database user can reach from any clone."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from paydata import privileges, settings
from paydata.stack import StackConfig, airflow_services, envfile
from paydata.stack.secretstore import AIRFLOW_USERS, ensure_airflow_users

PASSWORDS = {"reference_owner": "r", "oltp_owner": "o", "warehouse_owner": "w", "paydata_cdc": "c",
             "paydata_keystore": "k", **{user.name: "l" for user in privileges.LOGIN_USERS}}
AIRFLOW_SECRETS = {"fernet_key": "f", "jwt_secret": "j", "api_secret_key": "a"}
MONGO_PASSWORDS = {user: "m" for user in settings.MONGO_USERS.values()}


def _env(tmp_path: Path, port: int = 18555) -> dict[str, str]:
    config = StackConfig(state_dir=tmp_path, pg_port=61000, mongo_port=61001, airflow_port=port)
    return envfile.build_env(config, True, PASSWORDS, AIRFLOW_SECRETS, MONGO_PASSWORDS)


def test_every_visitor_must_log_in(tmp_path):
    values = _env(tmp_path)
    assert values["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    assert values["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin,viewer:viewer"
    assert values["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(tmp_path / "secrets" /
                                                                             "airflow_passwords.json")


def test_tasks_call_the_execution_api_on_the_port_the_api_server_uses(tmp_path):
    values = _env(tmp_path, port=18555)
    assert values["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert values["AIRFLOW__API__PORT"] == "18555"
    assert values["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18555/execution/"
    # `airflow up --port` overrides all of them together for the four components
    config = StackConfig(state_dir=tmp_path, airflow_port=18555)
    envfile.write(config.env_file, values)
    env = airflow_services.component_env(config, 18777)
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18777/execution/"
    assert env["AIRFLOW__API__PORT"] == "18777" and env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18777"
    api = airflow_services.command(config, "api-server", 18777)
    assert api[-6:] == ["--host", "127.0.0.1", "--port", "18777", "--workers", "1"]
    assert "--skip-serve-logs" in airflow_services.command(config, "scheduler", 18777)


def test_users_get_generated_private_passwords_that_are_kept(tmp_path):
    config = StackConfig(state_dir=tmp_path)
    first = ensure_airflow_users(config)
    assert set(first) == set(AIRFLOW_USERS) and all(len(pw) >= 20 for pw in first.values())
    assert stat.S_IMODE(config.airflow_users_file.stat().st_mode) == 0o600
    assert json.loads(config.airflow_users_file.read_text()) == first
    assert ensure_airflow_users(config) == first
    config.airflow_users_file.write_text("not json")
    assert set(ensure_airflow_users(config)) == set(AIRFLOW_USERS)


def test_nothing_recorded_means_nothing_to_stop(tmp_path):
    config = StackConfig(state_dir=tmp_path)
    assert airflow_services.running(config) == {}
    assert airflow_services.stop(config) == []
    # a stale record naming a pid that is not an Airflow component is never signalled
    config.airflow_run_dir.mkdir(parents=True)
    (config.airflow_run_dir / "scheduler.json").write_text(json.dumps({"pid": os.getpid(), "port": 18000}))
    assert airflow_services.running(config) == {}
    assert airflow_services.stop(config) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallback applies to root only")
def test_a_clone_under_a_private_folder_keeps_its_state_under_tmp(tmp_path, monkeypatch):
    private = tmp_path / "root-home"
    clone = private / "paydata"
    clone.mkdir(parents=True)
    private.chmod(0o700)
    monkeypatch.delenv("PAYDATA_STACK_DIR", raising=False)
    monkeypatch.setattr(settings, "REPO_ROOT", clone)
    assert settings.stack_dir() == settings.fallback_stack_dir(clone)
    assert str(settings.stack_dir()).startswith("/tmp/paydata-stack-")
    private.chmod(0o755)
    tmp_path.chmod(0o755)
    if settings._world_traversable(clone):
        assert settings.stack_dir() == clone / ".stack"
    monkeypatch.setenv("PAYDATA_STACK_DIR", str(tmp_path / "explicit"))
    assert settings.stack_dir() == tmp_path / "explicit"


def test_the_fallback_matches_ci():
    """`.ci/run` and every process of a clone agree on the folder: sha1 of the clone's path."""
    import hashlib

    repo = Path("/root/paydata")
    assert settings.fallback_stack_dir(repo) == Path(
        f"/tmp/paydata-stack-{hashlib.sha1(b'/root/paydata').hexdigest()[:12]}")
