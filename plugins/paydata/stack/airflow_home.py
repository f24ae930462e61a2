"""The stack's Airflow home: SQLite metadata database, migrated once per Airflow version."""

from __future__ import annotations

import os
import subprocess
from importlib import metadata

from paydata.stack.config import StackConfig, StackError

MIGRATE_TIMEOUT = 600


def airflow_version() -> str:
    try:
        return metadata.version("apache-airflow")
    except metadata.PackageNotFoundError:
        raise StackError("apache-airflow is not installed; run `pip install -r requirements.txt`") from None


def marker(config: StackConfig):
    return config.airflow_home / f".migrated-{airflow_version()}"


def is_migrated(config: StackConfig) -> bool:
    return config.airflow_db.exists() and marker(config).exists()


def ensure_migrated(config: StackConfig, env: dict[str, str]) -> bool:
    """Run ``airflow db migrate`` with the stack env unless already done for this Airflow version.

    Returns True when a migration ran. Raises StackError with the tail of Airflow's output on failure.
    """
    config.airflow_home.mkdir(parents=True, exist_ok=True)
    if is_migrated(config):
        return False
    child_env = {**os.environ, **env}
    result = subprocess.run([str(config.python), "-m", "airflow", "db", "migrate"], env=child_env,
                            cwd=config.airflow_home, capture_output=True, text=True, timeout=MIGRATE_TIMEOUT,
                            check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).splitlines()[-15:])
        raise StackError(f"`airflow db migrate` failed ({result.returncode}) for {config.airflow_db}:\n{tail}")
    for old in config.airflow_home.glob(".migrated-*"):
        old.unlink()
    marker(config).touch()
    return True
