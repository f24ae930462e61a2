"""A scorer's world on generated history, for tests and the serving benchmark.

:func:`prepare` fills an empty warehouse database (staging layout) with weeks of the generator's
traffic (:mod:`ml.training.synthetic`), builds marts, offline features and labels, trains and
registers ``fraud_scoring`` in the given MLflow store (``champion`` set on it whatever the gate
said: the tests need a champion, not a good one), and refreshes the online documents into the
given Mongo database. Sessions stay in memory (the offline build reads them there); a test that
needs some in Mongo copies them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

START = dt.datetime(2025, 9, 1, tzinfo=dt.UTC)


def prepare(conn, mongo_database, tracking_uri: str, *, weeks: int = 3, payments_per_week: int = 3000,
            seed: int = 5) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    from ml.features.definitions import load_definitions
    from ml.features.offline import build_features, build_training_set
    from ml.features.online import refresh_online
    from ml.registry.gate import CHAMPION, MODEL_NAME
    from ml.training.run import train_and_register
    from ml.training.synthetic import InMemorySessions, SyntheticHistory
    from paydata.generator.config import TrafficConfig
    from paydata.warehouse import build

    definitions = load_definitions()
    sessions = InMemorySessions()
    generated = SyntheticHistory(conn, merchants=40, seed=seed)
    generated.reference(START.date() - dt.timedelta(days=1), 7 * weeks + 3, seed=seed)
    for week in range(weeks):
        generated.traffic(TrafficConfig(payments=payments_per_week, start=START + dt.timedelta(days=7 * week),
                                        days=7, seed=seed * 10 + week), sessions_db=sessions)
    build(conn)
    build_features(conn, definitions, sessions_db=sessions)
    reference = build_training_set(conn, definitions, label_as_of=START + dt.timedelta(days=7 * weeks + 70))
    trained = train_and_register(conn, reference["training_set_id"], tracking_uri=tracking_uri)
    client = MlflowClient(tracking_uri)
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, trained["model_version"])
    online = refresh_online(conn, definitions, mongo_database)
    return {"definitions": definitions, "sessions": sessions, "training_set_id": reference["training_set_id"],
            "model_version": trained["model_version"], "run_id": trained["run_id"], "online": online}


def charges(conn, limit: int | None = None) -> list[dict[str, Any]]:
    """Charges of the offline store as scoring-API payloads (JSON-ready), newest first."""
    from ml.scoring.warehouse import charge_request as payload
    from paydata.sql import load_sql

    with conn.cursor() as cursor:
        cursor.execute(load_sql("warehouse/queries/scoring/sample_charges.sql"),
                       {"limit": limit})
        names = [column.name for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    conn.rollback()
    return [payload(row) for row in rows]


class ServerThread:
    """The app under a real uvicorn server on a free port of 127.0.0.1, in a thread (tests):
    ``with ServerThread(app) as base_url: ...``."""

    def __init__(self, app):
        import socket

        import uvicorn

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = None

    def __enter__(self) -> str:
        import threading
        import time

        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.listener]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the scoring server did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=15)
