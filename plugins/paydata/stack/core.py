"""Bring the local stack up, down, and report on it."""

from __future__ import annotations

import os
from collections.abc import Iterable

from paydata import privileges, settings
from paydata.stack import airflow_home, envfile, mongo, pgroles, postgres
from paydata.stack.config import (
    PG_CDC_ROLE,
    PG_SUPERUSER,
    SERVICES,
    StackConfig,
    StackError,
    parse_services,
)
from paydata.stack.secretstore import (
    ensure_airflow_users,
    ensure_fernet_key,
    ensure_key_file,
    ensure_mongo_password,
    ensure_password,
    ensure_secrets_dir,
    ensure_token,
    parse_key_file,
)
from paydata.stack.system import service_user
from paydata.stack.tls import ensure_mongo_tls, ensure_tls

PG_ROLES = (PG_SUPERUSER, *settings.DATABASE_OWNERS.values(), PG_CDC_ROLE,
            *(user.name for user in privileges.LOGIN_USERS))


def _services(services: Iterable[str] | str | None) -> tuple[str, ...]:
    if services is None or isinstance(services, str):
        return parse_services(services)
    return parse_services(",".join(services))


def _is_default_stack(config: StackConfig) -> bool:
    return config.env_file == settings.env_file()


def _passwords(config: StackConfig) -> dict[str, str]:
    return {role: ensure_password(config, role) for role in PG_ROLES}


def _mongo_passwords(config: StackConfig) -> dict[str, str]:
    """MongoDB user -> password: ``paydata_root`` and one user per consumer connection."""
    from paydata.mongo_access import ROOT_USER

    return {user: ensure_mongo_password(config, user) for user in (ROOT_USER, *settings.MONGO_USERS.values())}


def _airflow_secrets(config: StackConfig) -> dict[str, str]:
    return {
        "fernet_key": ensure_fernet_key(config),
        "jwt_secret": ensure_token(config, "airflow_jwt_secret"),
        "api_secret_key": ensure_token(config, "airflow_api_secret_key"),
    }


def ensure_up(config: StackConfig | None = None, services: Iterable[str] | str | None = None,
              export_env: bool | None = None) -> StackConfig:
    """Make the stack's services run and its env file current; cheap when everything already runs.

    ``services`` limits the work to some of postgres, mongo, airflow, mlflow (default: all). The env
    file is always (re)written from the secrets folder, which repairs a corrupted one. With
    ``export_env`` (default: only when ``config`` is the stack ``paydata.settings`` resolves to) the
    env file is loaded into ``os.environ`` with override. Raises StackError with what to do when a port
    is taken, binaries are missing, the state folder is unreachable for the Postgres user, or a
    service fails to start.
    """
    config = config or StackConfig.default()
    wanted = _services(services)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    ensure_secrets_dir(config)
    binaries = postgres.resolve_binaries(config.pg_binaries)
    passwords = _passwords(config)
    mongo_passwords = _mongo_passwords(config)
    ensure_key_file(config.kek_file)
    ensure_key_file(config.token_key_file)
    ensure_key_file(config.backup_kek_file, key_id="bk1")
    ensure_airflow_users(config)
    values = envfile.build_env(config, binaries.tls, passwords, _airflow_secrets(config), mongo_passwords,
                               binaries.bin_dir)
    envfile.write(config.env_file, values)

    if "postgres" in wanted:
        user = service_user()
        if binaries.tls:
            ensure_tls(config, user)
        postgres.ensure_running(config, binaries, user, passwords)
    if "mongo" in wanted:
        config.mongo_dir.mkdir(parents=True, exist_ok=True)
        ensure_mongo_tls(config)
        mongo.start(config)
        mongo.ensure_access(config, mongo_passwords)
    if "mlflow" in wanted:
        config.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
    if "airflow" in wanted:
        airflow_home.ensure_migrated(config, values)

    if export_env if export_env is not None else _is_default_stack(config):
        if _is_default_stack(config):
            settings.load_env_file(override=True)
        else:
            os.environ.update(values)
    return config


def shutdown(config: StackConfig | None = None) -> list[str]:
    """Stop the scheduled mode's Airflow components, Postgres (fast shutdown) and SecantusDB, keeping
    all data; returns the services stopped."""
    from paydata.stack import airflow_services

    config = config or StackConfig.default()
    stopped = [f"airflow {name}" for name in airflow_services.stop(config)]
    if mongo.stop(config):
        stopped.append("mongo")
    if postgres.running_pid(config) is not None:
        try:
            binaries = postgres.resolve_binaries(config.pg_binaries)
        except StackError:
            binaries = None
        if postgres.stop(config, binaries, service_user()):
            stopped.append("postgres")
    return stopped


def _stored_password(config: StackConfig, role: str) -> str | None:
    path = config.password_file(role)
    return path.read_text().strip() if path.exists() else None


def _postgres_status(config: StackConfig) -> dict:
    row = {"service": "postgres", "endpoint": f"127.0.0.1:{config.pg_port} + {config.pg_socket_dir}",
           "pid": None, "health": "stopped", "notes": ""}
    try:
        binaries = postgres.resolve_binaries(config.pg_binaries)
    except StackError as exc:
        row.update(health="error", notes=str(exc))
        return row
    if binaries.tls:
        row["notes"] = f"Postgres {binaries.major} ({binaries.kind}); TLS 1.3 only, plaintext TCP rejected"
    else:
        row["endpoint"] = str(config.pg_socket_dir)
        row["notes"] = f"Postgres {binaries.major} ({binaries.kind}); unix socket only (binaries lack OpenSSL)"
    row["notes"] += "; audit: " + pgroles.describe(pgroles.pgaudit_library(binaries.bin_dir) is not None)
    if not (config.pg_data / "PG_VERSION").exists():
        row["health"] = "not initialised"
        return row
    row["pid"] = postgres.running_pid(config)
    if row["pid"] is None:
        if (config.pg_data / "postmaster.pid").exists():
            row["notes"] += "; stale postmaster.pid (crash?), `up` recovers it"
        return row
    password = _stored_password(config, PG_SUPERUSER)
    row["health"] = "healthy" if password and postgres.healthy(config, password) else "unhealthy"
    return row


def _mongo_status(config: StackConfig) -> dict:
    row = {"service": "mongo", "endpoint": f"127.0.0.1:{config.mongo_port}", "pid": mongo.running_pid(config),
           "health": "stopped", "notes": f"SecantusDB, auth (SCRAM-SHA-256) and TLS required, data {config.mongo_data}"}
    if row["pid"] is not None:
        row["health"] = "healthy" if mongo.ping(config) else "unhealthy"
    elif config.mongo_pid_file.exists():
        row["notes"] += "; stale pid file, `up` recovers it"
    return row


def _airflow_status(config: StackConfig) -> dict:
    migrated = airflow_home.is_migrated(config)
    return {"service": "airflow", "endpoint": f"sqlite:///{config.airflow_db}", "pid": None,
            "health": "ready" if migrated else "not initialised",
            "notes": f"AIRFLOW_HOME {config.airflow_home}; dags {config.repo_root / 'dags'}"}


def _mlflow_status(config: StackConfig) -> dict:
    ready = config.mlflow_artifacts.is_dir()
    note = "tracking+registry in SQLite, no server" + ("" if config.mlflow_db.exists() else " (db created on first use)")
    return {"service": "mlflow", "endpoint": f"sqlite:///{config.mlflow_db}", "pid": None,
            "health": "ready" if ready else "not initialised", "notes": f"{note}; artifacts {config.mlflow_artifacts}"}


def _env_status(config: StackConfig) -> dict:
    row = {"service": "env", "endpoint": str(config.env_file), "pid": None, "health": "ready", "notes": ""}
    try:
        envfile.check(config.env_file)
        for key_file in (config.kek_file, config.token_key_file, config.backup_kek_file):
            parse_key_file(key_file)
    except (StackError, OSError) as exc:
        row.update(health="corrupted" if config.env_file.exists() else "missing", notes=str(exc))
    return row


HEALTHY_STATES = ("healthy", "ready")


def status(config: StackConfig | None = None) -> list[dict]:
    """One row per service (postgres, mongo, airflow, mlflow, env) with keys service, endpoint, pid,
    health and notes. ``health`` is healthy/ready when usable; otherwise it says what is wrong. Never
    starts or changes anything."""
    config = config or StackConfig.default()
    return [_postgres_status(config), _mongo_status(config), _airflow_status(config), _mlflow_status(config),
            _env_status(config)]


def mongo_root_client(config: StackConfig | None = None, **kwargs):
    """A pymongo client as ``paydata_root`` (creates and drops any database; tests and benchmarks).

    Raises StackError when the stack was never brought up."""
    from paydata.mongo_access import ROOT_USER

    config = config or StackConfig.default()
    path = config.mongo_password_file(ROOT_USER)
    password = path.read_text().strip() if path.exists() else ""
    if not password:
        raise StackError(f"No MongoDB administrator password in {config.secrets_dir}; run `python -m paydata.stack up`")
    return mongo.root_client(config, password, **kwargs)


def admin_connect(dbname: str = "postgres", config: StackConfig | None = None):
    """A psycopg2 connection as superuser ``paydata_admin`` over the cluster's Unix socket.

    Raises StackError when the stack was never brought up, psycopg2.OperationalError when it is down.
    """
    config = config or StackConfig.default()
    password = _stored_password(config, PG_SUPERUSER)
    if not password:
        raise StackError(f"No Postgres admin password in {config.secrets_dir}; run `python -m paydata.stack up`")
    return postgres.connect(config, password, dbname=dbname)


__all__ = ["SERVICES", "admin_connect", "ensure_up", "mongo_root_client", "shutdown", "status"]
