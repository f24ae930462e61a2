"""The stack's env file: every endpoint and path other code needs, as ``KEY='value'`` lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

from paydata import privileges, settings
from paydata.stack.config import CDC_DATABASES, PG_CDC_ROLE, StackConfig, StackError
from paydata.stack.secretstore import AIRFLOW_USERS, write_private

KEY_PATTERN = re.compile(r"^[A-Z_][A-Z0-9_]*$")
CDC_CONN_PREFIX = "paydata_cdc_"


def _conn_env(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


def postgres_connection(config: StackConfig, tls: bool, login: str, password: str, database: str) -> dict:
    """Airflow JSON connection for one database: verify-full TLS over TCP, or the Unix socket folder
    (socket-only clusters, where libpq treats a host starting with '/' as the socket directory)."""
    if tls:
        return {"conn_type": "postgres", "host": "localhost", "port": config.pg_port, "login": login,
                "password": password, "schema": database,
                "extra": {"sslmode": "verify-full", "sslrootcert": str(config.ca_cert)}}
    return {"conn_type": "postgres", "host": str(config.pg_socket_dir), "port": config.pg_port, "login": login,
            "password": password, "schema": database, "extra": {}}


def mongo_connection(config: StackConfig, login: str, password: str) -> dict:
    """Airflow JSON connection for one SecantusDB user: SCRAM against ``admin``, TLS verified by the
    stack's CA. The extra holds MongoDB URI options, read alike by MongoHook and ``settings``."""
    return {"conn_type": "mongo", "host": "127.0.0.1", "port": config.mongo_port, "login": login,
            "password": password, "schema": settings.MONGO_DATABASE,
            "extra": {"tls": True, "tlsCAFile": str(config.ca_cert), "authSource": settings.MONGO_AUTH_SOURCE,
                      "directConnection": True}}


API_HOST = "127.0.0.1"


def airflow_api_env(port: int) -> dict[str, str]:
    """Where the API server listens and where tasks find its execution API: always the same port.

    Task processes call the execution API; left unset it defaults to ``http://localhost:8080/execution/``
    whatever port the API server was started on, and every task of a scheduled run fails.
    """
    base = f"http://{API_HOST}:{port}"
    return {
        "AIRFLOW__API__HOST": API_HOST,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
    }


def build_env(config: StackConfig, tls: bool, passwords: dict[str, str], airflow_secrets: dict[str, str],
              mongo_passwords: dict[str, str], pg_bin_dir: Path | None = None) -> dict[str, str]:
    """All variables of the env file, in a stable order.

    ``pg_bin_dir`` is the Postgres ``bin`` folder the stack runs; backups use its ``pg_dump`` and
    ``pg_restore``, whose major version must match the server's.

    ``passwords`` maps role names (owners, paydata_cdc, the login users of ``paydata.privileges``) to passwords; ``airflow_secrets`` holds
    ``fernet_key``, ``jwt_secret`` and ``api_secret_key``; ``mongo_passwords`` maps MongoDB user
    names (``settings.MONGO_USERS``) to passwords. Raises KeyError when one is missing.
    """
    values: dict[str, str] = {
        "PAYDATA_STACK_DIR": str(config.state_dir),
        "AIRFLOW_HOME": str(config.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(config.repo_root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(config.repo_root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{config.airflow_db}",
        # LocalExecutor is Airflow 3's default and the only bundled one; with SQLite, `airflow dags test`
        # runs tasks in-process and the scheduler must stay single (parallelism 1 avoids lock contention).
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "1",
        "AIRFLOW__CORE__FERNET_KEY": airflow_secrets["fernet_key"],
        # A login for everyone: named users with generated passwords (secretstore.AIRFLOW_USERS), never
        # the all-admins mode in which every visitor is an administrator.
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in AIRFLOW_USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(config.airflow_users_file),
        "AIRFLOW__API_AUTH__JWT_SECRET": airflow_secrets["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": airflow_secrets["api_secret_key"],
        **airflow_api_env(config.airflow_port),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(config.airflow_home / "logs"),
    }
    for database, conn_id in settings.POSTGRES_DATABASES.items():
        owner = settings.DATABASE_OWNERS[database]
        values[_conn_env(conn_id)] = json.dumps(
            postgres_connection(config, tls, owner, passwords[owner], database), separators=(",", ":")
        )
    # Capture runs beside the database, so its replication sessions use the Unix socket even when the
    # cluster serves TLS: a walsender flushes every decoded change on its own, and over TLS on TCP
    # that per-message cost alone held the stream to about 92k changes/s on the reference machine,
    # against 250k/s on the socket (docs/benchmarks.md). A socket never crosses a network; the role
    # still authenticates with SCRAM and may only reach the source databases.
    for database in CDC_DATABASES:
        values[_conn_env(CDC_CONN_PREFIX + database)] = json.dumps(
            postgres_connection(config, False, PG_CDC_ROLE, passwords[PG_CDC_ROLE], database), separators=(",", ":")
        )
    # Least-privilege logins (paydata.privileges): same transport as the owners' connections.
    for user in privileges.role_connections().values():
        values[_conn_env(user.conn_id)] = json.dumps(
            postgres_connection(config, tls, user.name, passwords[user.name], user.database), separators=(",", ":")
        )
    for conn_id, user in settings.MONGO_USERS.items():
        values[_conn_env(conn_id)] = json.dumps(
            mongo_connection(config, user, mongo_passwords[user]), separators=(",", ":")
        )
    values["MLFLOW_TRACKING_URI"] = f"sqlite:///{config.mlflow_db}"
    values["PAYDATA_MLFLOW_ARTIFACTS"] = str(config.mlflow_artifacts)
    values["PAYDATA_KEK_FILE"] = str(config.kek_file)
    values["PAYDATA_TOKEN_KEY_FILE"] = str(config.token_key_file)
    # Backups: their own key ring, kept apart from the data KEK, and where the encrypted files go.
    values["PAYDATA_BACKUP_KEK_FILE"] = str(config.backup_kek_file)
    values["PAYDATA_BACKUP_DIR"] = str(config.backup_dir)
    if pg_bin_dir is not None:
        values["PAYDATA_PG_BIN_DIR"] = str(pg_bin_dir)
    return values


def required_keys() -> list[str]:
    conn_ids = [*settings.POSTGRES_DATABASES.values(), *(CDC_CONN_PREFIX + db for db in CDC_DATABASES),
                *privileges.role_connections(), *settings.MONGO_USERS]
    return ["PAYDATA_STACK_DIR", "AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
            "MLFLOW_TRACKING_URI", "PAYDATA_KEK_FILE", "PAYDATA_TOKEN_KEY_FILE",
            *(_conn_env(conn_id) for conn_id in conn_ids)]


def render(values: dict[str, str]) -> str:
    """``KEY='value'`` lines (shell-sourceable; single quotes escaped as '\\''), readable by
    ``settings.parse_env_file``. Raises ValueError for a bad key or a value with a newline."""
    lines = ["# Generated by `python -m paydata.stack up`; rerun it to regenerate. Holds passwords: keep private."]
    for key, value in values.items():
        if not KEY_PATTERN.match(key):
            raise ValueError(f"invalid environment variable name {key!r}")
        if "\n" in value or "\r" in value:
            raise ValueError(f"value of {key} contains a line break")
        lines.append(f"{key}='" + value.replace("'", "'\\''") + "'")
    return "\n".join(lines) + "\n"


def write(path: Path, values: dict[str, str]) -> None:
    write_private(path, render(values).encode())


def check(path: Path) -> dict[str, str]:
    """Parse and validate an env file; raise StackError saying what is wrong and how to fix it."""
    fix = "Run `python -m paydata.stack up` to regenerate it (passwords come from the secrets folder)."
    if not path.exists():
        raise StackError(f"The env file {path} does not exist. {fix}")
    try:
        values = settings.parse_env_file(path)
    except settings.SettingsError as exc:
        raise StackError(f"The env file is corrupted: {exc}. {fix}") from exc
    except UnicodeDecodeError as exc:
        raise StackError(f"The env file {path} is corrupted (not UTF-8 text). {fix}") from exc
    missing = [key for key in required_keys() if key not in values]
    if missing:
        raise StackError(f"The env file {path} is corrupted: it lacks {', '.join(missing)}. {fix}")
    for key, value in values.items():
        if key.startswith("AIRFLOW_CONN_"):
            try:
                data = json.loads(value)
            except json.JSONDecodeError:
                raise StackError(f"The env file {path} is corrupted: {key} is not valid JSON. {fix}") from None
            if not isinstance(data, dict) or "conn_type" not in data or "host" not in data:
                raise StackError(f"The env file {path} is corrupted: {key} lacks conn_type/host. {fix}")
    return values
