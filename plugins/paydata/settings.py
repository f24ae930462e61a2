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
from urllib.parse import quote_plus, urlencode

REPO_ROOT = Path(__file__).resolve().parents[2]

# Connection ids shared by DAGs, docker-compose.yaml and the local stack.
REFERENCE_CONN_ID = "paydata_reference"
OLTP_CONN_ID = "paydata_oltp"
WAREHOUSE_CONN_ID = "paydata_warehouse"
# MongoDB: one connection, and one server user, per consumer (docs/security.md, *MongoDB access*).
MONGO_CONN_ID = "paydata_mongo"  # administrator: collection definitions, validators, indexes; no data path
MONGO_CDC_CONN_ID = "paydata_mongo_cdc"  # CDC writer (the Mongo sink)
MONGO_INGEST_CONN_ID = "paydata_mongo_ingest"  # landing-file ingestion writer
MONGO_FEATURES_CONN_ID = "paydata_mongo_features"  # reads sessions/telemetry/feedback/payments, writes features
MONGO_ANALYST_CONN_ID = "paydata_mongo_analyst"  # read only (the example queries)
MONGO_BACKUP_CONN_ID = "paydata_mongo_backup"  # reads paydata for backups; owns only the restore-drill scratch database
MONGO_SCORER_CONN_ID = "paydata_mongo_scorer"  # the fraud scoring API: reads features and sessions, nothing else
# Connection id -> MongoDB user name; every user lives in the ``admin`` database (authSource).
MONGO_USERS = {
    MONGO_CONN_ID: "paydata_admin",
    MONGO_CDC_CONN_ID: "paydata_cdc",
    MONGO_INGEST_CONN_ID: "paydata_ingest",
    MONGO_FEATURES_CONN_ID: "paydata_features",
    MONGO_ANALYST_CONN_ID: "paydata_analyst",
    MONGO_BACKUP_CONN_ID: "paydata_backup",
    MONGO_SCORER_CONN_ID: "paydata_scorer",
}
# Mongo connections no Airflow component holds: the service that uses one gets it from its own
# Secret (compose service, Kubernetes Secret); the local stack's env file has them for development.
SERVICE_MONGO_CONN_IDS = (MONGO_SCORER_CONN_ID,)
MONGO_AUTH_SOURCE = "admin"
# The fraud scoring API (ml/serving): an http connection with the caller's API key as password.
FRAUD_SCORER_CONN_ID = "paydata_fraud_scorer"
# The key store: wrapped data keys, in a database no capture or analyst role may connect to.
KEYSTORE_CONN_ID = "paydata_keystore"
# Least-privilege Postgres connections, one per login user (paydata/privileges.py, docs/security.md,
# *Roles and privileges*). The owner connections above are for migrations and the jobs that still
# need an owner (DDL); everything else should use one of these.
OLTP_APP_CONN_ID = "paydata_oltp_app"  # the payment API's write path and the audit function
OLTP_AUDITOR_CONN_ID = "paydata_oltp_auditor"  # reads the audit log (audit-verify)
REFERENCE_AUDITOR_CONN_ID = "paydata_reference_auditor"  # the same login, the reference audit log
WAREHOUSE_LOADER_CONN_ID = "paydata_warehouse_loader"  # staging and marts data, no DDL
WAREHOUSE_ANALYST_CONN_ID = "paydata_warehouse_analyst"  # marts and analytics views, read only
WAREHOUSE_ML_CONN_ID = "paydata_warehouse_ml"  # marts and features read, schema ml write

# Logical database name -> connection id; the database name equals the logical name.
POSTGRES_DATABASES = {
    "reference": REFERENCE_CONN_ID,
    "oltp": OLTP_CONN_ID,
    "warehouse": WAREHOUSE_CONN_ID,
    "keystore": KEYSTORE_CONN_ID,
}
# Each database is owned by its own role; applications log in as that owner in the local stack.
# The key store's owner is the only role besides the superuser that may connect to it.
KEYSTORE_ROLE = "paydata_keystore"
DATABASE_OWNERS = {name: f"{name}_owner" for name in POSTGRES_DATABASES if name != "keystore"}
DATABASE_OWNERS["keystore"] = KEYSTORE_ROLE

MONGO_DATABASE = "paydata"

# Change capture: one manifest per source database (include/cdc/<source>.yaml); a source is captured
# through two connections, its capture role's and its tables' owner's (publications need ownership).
CDC_MANIFEST_DIR_VARIABLE = "PAYDATA_CDC_MANIFEST_DIR"


def cdc_manifest_dir() -> Path:
    """Folder of the capture manifests (``PAYDATA_CDC_MANIFEST_DIR`` overrides ``include/cdc``)."""
    return Path(os.environ.get(CDC_MANIFEST_DIR_VARIABLE) or REPO_ROOT / "include" / "cdc")


def cdc_sources() -> list[str]:
    """The captured sources: one per manifest file (reads file names only; cheap at DAG parse time)."""
    return sorted(path.stem for path in cdc_manifest_dir().glob("*.yaml"))


def capture_conn_id(source: str) -> str:
    """Connection of ``source``'s capture role (REPLICATION + SELECT on the captured tables)."""
    return f"paydata_cdc_{source}"


def owner_conn_id(source: str) -> str:
    """Connection of the owner of ``source``'s tables (creates and alters its publication)."""
    return f"paydata_{source}"


def restore_drill_database(database: str) -> str:
    """The scratch database the restore drill restores ``database``'s latest backup into."""
    return f"restore_drill_{database}"


DEFAULT_POSTGRES_PORT = 55432
DEFAULT_MONGO_PORT = 57017


DEFAULT_AIRFLOW_PORT = 8080


def _world_traversable(path: Path) -> bool:
    """True when every existing folder from ``/`` down to ``path`` can be entered by any user."""
    import stat

    for folder in [*reversed(path.parents), path]:
        try:
            mode = folder.stat().st_mode
        except OSError:
            return True  # not created yet: the folders above it decide
        if not mode & stat.S_IXOTH:
            return False
    return True


def fallback_stack_dir(repo_root: Path | None = None) -> Path:
    """``/tmp/paydata-stack-<first 12 hex of sha1(repo path)>``: stable per clone, reachable by everyone."""
    import hashlib

    repo_root = REPO_ROOT if repo_root is None else repo_root
    return Path("/tmp") / f"paydata-stack-{hashlib.sha1(str(repo_root).encode()).hexdigest()[:12]}"


def stack_dir() -> Path:
    """Folder holding all local-stack state (clusters, certificates, Airflow home, MLflow store).

    ``PAYDATA_STACK_DIR`` when set; otherwise ``<repo>/.stack``, except when running as root from a
    clone the unprivileged database user cannot enter (e.g. under root's mode-0700 home): then
    :func:`fallback_stack_dir`, so ``make demo`` works from any clone. Every process of one clone
    resolves the same folder.
    """
    explicit = os.environ.get("PAYDATA_STACK_DIR")
    if explicit:
        return Path(explicit).resolve()
    default = (REPO_ROOT / ".stack").resolve()
    if hasattr(os, "geteuid") and os.geteuid() == 0 and not _world_traversable(REPO_ROOT):
        return fallback_stack_dir()
    return default


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
        """A ``mongodb://`` URI with the credentials and every option of ``extra``.

        ``extra`` holds MongoDB URI options as Airflow's MongoHook reads them (``tls``,
        ``tlsCAFile``, ``authSource``, ``replicaSet``, ``directConnection``, ...), so the same
        connection works with the hook and with :func:`mongo_client`. ``extra["uri"]`` replaces
        everything. Without ``replicaSet`` the client connects directly to the one host. The URI
        holds the password: never log it.
        """
        if self.extra.get("uri"):
            return str(self.extra["uri"])
        auth = f"{quote_plus(self.login)}:{quote_plus(self.password or '')}@" if self.login else ""
        options = {key: value for key, value in self.extra.items() if key not in _NON_URI_EXTRAS}
        if "replicaSet" not in options:
            options.setdefault("directConnection", True)
        query = urlencode({key: _uri_value(value) for key, value in options.items()})
        return f"mongodb://{auth}{self.host}:{self.port}/?{query}"

    @property
    def mongo_tls(self) -> bool:
        """True when the Mongo connection asks for TLS (``tls`` or its alias ``ssl`` in ``extra``)."""
        return any(str(self.extra.get(key, "")).lower() == "true" for key in ("tls", "ssl"))


# Keys of a Mongo connection's extra that are not URI options (MongoHook reads them itself).
_NON_URI_EXTRAS = frozenset({"uri", "srv", "allow_insecure"})


def _uri_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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


# Postgres deadlines of a capture run, as libpq ``options``. Lock waits are bounded everywhere (a
# publication's DDL or a staging table blocked by someone else's lock fails the run with a clear
# error instead of hanging it); statements are bounded on bookkeeping connections only, since a
# snapshot's COPY and a sink's batch load grow with the data.
PG_LOCK_TIMEOUT_MS = 60_000
PG_BOOKKEEPING_STATEMENT_TIMEOUT_MS = 120_000


def pg_deadlines(*, statements: bool) -> dict[str, str]:
    """``options`` for :func:`pg_connect`: ``lock_timeout`` always, ``statement_timeout`` if ``statements``."""
    options = f"-c lock_timeout={PG_LOCK_TIMEOUT_MS}"
    if statements:
        options += f" -c statement_timeout={PG_BOOKKEEPING_STATEMENT_TIMEOUT_MS}"
    return {"options": options}


# Every Mongo call is bounded: a server that accepts connections and then stops answering (seen with
# a wedged wire server) fails the caller with a timeout instead of hanging it. A socket read may
# wait this long; the Mongo sink's largest batch write measured about 15 s.
MONGO_DEADLINES = {"connectTimeoutMS": 10_000, "serverSelectionTimeoutMS": 15_000, "socketTimeoutMS": 120_000}


def mongo_client(conn_id: str = MONGO_CONN_ID, **kwargs: Any):
    """A pymongo client logged in as the user of ``conn_id`` (TLS and auth options from its extra).

    Pick the connection of the job at hand (``MONGO_CDC_CONN_ID``, ``MONGO_ANALYST_CONN_ID``, ...):
    the server refuses what that user's role does not allow with code 13 (Unauthorized).
    """
    from pymongo import MongoClient

    return MongoClient(connection(conn_id).mongo_uri(), **{**MONGO_DEADLINES, **kwargs})


def mongo_database(conn_id: str = MONGO_CONN_ID):
    """The connection's database (its ``schema``, default ``paydata``) on a new client."""
    conn = connection(conn_id)
    client = mongo_client(conn_id)
    return client[conn.schema or MONGO_DATABASE]


def mlflow_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{stack_dir() / 'mlflow' / 'mlflow.db'}")
