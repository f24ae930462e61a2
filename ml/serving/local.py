"""The scorer as a local process for ``make demo``: started on a free port of 127.0.0.1 with a
fresh API key, and stopped afterwards.

``with LocalScorer() as connection:`` yields the ``AIRFLOW_CONN_PAYDATA_FRAUD_SCORER`` value (JSON)
for the DAG runs that call it, or None when the scorer did not become ready (no champion yet:
then there is nothing to score with). The key's hash is written under the stack folder, the key
itself only into the yielded connection.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time

READY_SECONDS = 120


class LocalScorer:
    def __init__(self, *, echo=print):
        self.echo = echo
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> str | None:
        import httpx

        from ml.serving import auth
        from paydata import settings

        folder = settings.stack_dir() / "fraud-scorer"
        folder.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        keys_file = folder / "api-keys"
        keys_file.write_text(auth.key_line("demo", key) + "\n")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**os.environ, "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri(),
               "PAYDATA_SCORER_API_KEYS_FILE": str(keys_file)}
        log = (folder / "scorer.log").open("w")
        self.process = subprocess.Popen([sys.executable, "-m", "ml.serving", "--host", "127.0.0.1", "--port",
                                         str(port), "--log-level", "warning"], env=env, stdout=log,
                                        stderr=subprocess.STDOUT, cwd=settings.REPO_ROOT)
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    self.echo(f"    fraud scorer ready on 127.0.0.1:{port}")
                    return json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http",
                                       "password": key})
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.echo(f"    fraud scorer not ready (no champion model yet?); log: {folder / 'scorer.log'}")
        return None

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
