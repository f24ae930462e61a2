"""The local stack: a project-owned Postgres cluster (TLS 1.3), SecantusDB, an Airflow home and an MLflow
store, all under one state folder (``settings.stack_dir()``), described by ``<stack>/paydata.env``.

Use ``python -m paydata.stack up|down|status`` or the functions below. ``StackConfig`` describes one
stack; tests build a second one in a temporary folder on other ports.
"""

from paydata.stack.config import SERVICES, StackConfig, StackError
from paydata.stack.core import admin_connect, ensure_up, mongo_root_client, shutdown, status

__all__ = ["SERVICES", "StackConfig", "StackError", "admin_connect", "ensure_up", "mongo_root_client", "shutdown",
           "status"]
