"""Where everything lives: the one place that resolves endpoints for local, compose and production.

Every endpoint reaches code through an Airflow Connection, exported as an ``AIRFLOW_CONN_<ID>``
environment variable in Airflow's JSON form. Inside Airflow the same variables back the hooks;
outside Airflow (CLIs, tests, benchmarks) :func:`connection` reads them directly, so there is one
source of truth and no credentials in code.

The local stack writes these variables into ``<stack dir>/paydata.env`` (see ``paydata.stack``);
compose and production set them in the container environment.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

# Connection ids shared by DAGs, docker-compose.yaml and the local stack.
REFERENCE_CONN_ID = "paydata_reference"
OLTP_CONN_ID = "paydata_oltp"
WAREHOUSE_CONN_ID = "paydata_warehouse"
MONGO_CONN_ID = "paydata_mongo"
# The fraud features' own Mongo consumer (the online store, session reads).
MONGO_FEATURES_CONN_ID = "paydata_mongo_features"

# Logical database name -> connection id; the database name equals the logical name.
POSTGRES_DATABASES = {
    "reference": REFERENCE_CONN_ID,
    "oltp": OLTP_CONN_ID,
    "warehouse": WAREHOUSE_CONN_ID,
}
# Each database is owned by its own role; applications log in as that owner in the local stack.
DATABASE_OWNERS = {name: f"{name}_owner" for name in POSTGRES_DATABASES}

MONGO_DATABASE = "paydata"

DEFAULT_POSTGRES_PORT = 55432
DEFAULT_MONGO_PORT = 57017


def stack_dir() -> Path:
    """Folder holding all local-stack state (clusters, certificates, Airflow home, MLflow store)."""
    return Path(os.environ.get("PAYDATA_STACK_DIR", REPO_ROOT / ".stack")).resolve()


def env_file() -> Path:
    return stack_dir() / "paydata.env"


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message says how to fix it."""


@dataclass(frozen=True)
class Connection:
    conn_id: str
    conn_type: str
    host: str
    port: int | None = None
    login: str | None = None
    password: str | None = None
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def psycopg2_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``psycopg2.connect``; TLS options come from ``extra``."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.login,
            "password": self.password,
            "dbname": self.schema,
        }
        for key in ("sslmode", "sslrootcert", "sslcert", "sslkey", "application_name"):
            if key in self.extra:
                kwargs[key] = self.extra[key]
        kwargs.update(overrides)
        return {k: v for k, v in kwargs.items() if v is not None}

    @property
    def requires_tls(self) -> bool:
        """True when the connection must be encrypted (TCP); Unix-socket connections never cross a network."""
        return self.extra.get("sslmode") in {"require", "verify-ca", "verify-full"}

    def mongo_uri(self) -> str:
        if self.extra.get("uri"):
            return str(self.extra["uri"])
        auth = f"{self.login}:{self.password}@" if self.login else ""
        query = "?directConnection=true" if not self.extra.get("replicaSet") else (
            f"?replicaSet={self.extra['replicaSet']}"
        )
        return f"mongodb://{auth}{self.host}:{self.port}/{query}"


def _env_name(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


def connection(conn_id: str) -> Connection:
    """Resolve ``conn_id`` from ``AIRFLOW_CONN_<ID>`` (JSON form), loading the stack env file if needed."""
    raw = os.environ.get(_env_name(conn_id))
    if raw is None:
        load_env_file(missing_ok=True)
        raw = os.environ.get(_env_name(conn_id))
    if raw is None:
        from_airflow = _airflow_connection(conn_id)
        if from_airflow is not None:
            return from_airflow
        raise SettingsError(
            f"connection {conn_id!r} is not configured: set {_env_name(conn_id)} "
            f"or start the local stack with `python -m paydata.stack up` (writes {env_file()})"
        )
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{_env_name(conn_id)} is not valid JSON ({exc}); regenerate it") from exc
    if not isinstance(data, dict) or "conn_type" not in data or "host" not in data:
        raise SettingsError(f"{_env_name(conn_id)} must be a JSON object with conn_type and host")
    port = data.get("port")
    return Connection(
        conn_id=conn_id,
        conn_type=data["conn_type"],
        host=data["host"],
        port=int(port) if port not in (None, "") else None,
        login=data.get("login"),
        password=data.get("password"),
        schema=data.get("schema"),
        extra=data.get("extra") or {},
    )


def _airflow_connection(conn_id: str) -> Connection | None:
    """Inside Airflow, fall back to its own lookup so secrets backends work as well as env vars."""
    if "AIRFLOW_HOME" not in os.environ and "AIRFLOW__CORE__EXECUTOR" not in os.environ:
        return None
    try:
        from airflow.sdk import BaseHook

        found = BaseHook.get_connection(conn_id)
    except Exception:  # not inside a task, or the connection is unknown: report it as missing
        return None
    return Connection(
        conn_id=conn_id,
        conn_type=found.conn_type,
        host=found.host,
        port=found.port,
        login=found.login,
        password=found.password,
        schema=found.schema,
        extra=found.extra_dejson,
    )


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse ``KEY='value'`` lines as written by the stack; raise SettingsError on anything else."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export "):]
        key, sep, value = stripped.partition("=")
        if not sep or not key.replace("_", "").isalnum():
            raise SettingsError(
                f"{path}:{number}: not a KEY=value line; the env file is corrupted, "
                "rerun `python -m paydata.stack up` to regenerate it"
            )
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1].replace("'\\''", "'")
        values[key] = value
    return values


def load_env_file(missing_ok: bool = False, override: bool = False) -> dict[str, str]:
    """Export the stack's env file into ``os.environ`` (existing variables win unless ``override``)."""
    path = env_file()
    if not path.exists():
        if missing_ok:
            return {}
        raise SettingsError(f"{path} not found: run `python -m paydata.stack up` first")
    values = parse_env_file(path)
    for key, value in values.items():
        if override or key not in os.environ:
            os.environ[key] = value
    return values


def pg_connect(conn_id: str, **overrides: Any):
    """Open a psycopg2 connection for ``conn_id`` (imported lazily: DAG files must not pay for it)."""
    import psycopg2

    return psycopg2.connect(**connection(conn_id).psycopg2_kwargs(**overrides))


def mongo_client(conn_id: str = MONGO_CONN_ID, **kwargs: Any):
    from pymongo import MongoClient

    return MongoClient(connection(conn_id).mongo_uri(), **kwargs)


def mongo_database(conn_id: str = MONGO_CONN_ID):
    conn = connection(conn_id)
    client = mongo_client(conn_id)
    return client[conn.schema or MONGO_DATABASE]


def mlflow_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{stack_dir() / 'mlflow' / 'mlflow.db'}")
