"""DAG tests parse DAG files only: give Airflow a throwaway home so nothing touches a real one."""

from __future__ import annotations

import os
import tempfile

_home = tempfile.mkdtemp(prefix="paydata-dagtest-airflow-")
os.environ.setdefault("AIRFLOW_HOME", _home)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
