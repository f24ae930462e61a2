"""The monitoring loop end to end, on real Postgres, the Mongo wire server and a running scorer:

a shifted generated world -> ``fraud_monitor``'s pass detects the drift and requests retraining ->
``fraud_train``'s steps train a challenger -> the registry gate promotes it -> the scorer (real
uvicorn server, reloader polling the alias) serves it; a challenger that fails the gate changes
neither the champion nor the served version; ``fraud_score`` against the running service writes
the new champion's scores for the charges within the online horizon. Requests are sent at a steady
rate from before the first pass to the end, and none may fail.

The world is small (8 days of 1,000 payments for training, one covariate-shifted day 70 days
later); the first champion is a deliberately weak one-split model made champion by hand, so the
retrained challenger has something to beat.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ml.features.definitions import load_definitions
from ml.monitoring.testing import GeneratedWorld
from paydata.generator.shift import WorldShift
from tests.staging_layout import create_staging_layout

pytestmark = pytest.mark.integration

DEFINITIONS = load_definitions()
START = dt.datetime(2025, 3, 3, tzinfo=dt.UTC)
TRAINING_DAYS = 8
SHIFTED_DAY = 70        # labels of the training days have matured by then; the shifted day's have not
WEAK = {"max_iter": 1, "max_leaf_nodes": 2}   # one split: a champion a real challenger beats
RATE = 25               # requests per second, from before the first pass to the end
POLL_SECONDS = 0.2


@pytest.fixture
def loop_world(admin_connect, fresh_database, mongo_db, tmp_path, monkeypatch):
    """The generated world in its own warehouse, its online documents in ``mongo_db``, a temporary
    MLflow store; the DAG steps' warehouse connections (``paydata.settings``) point at them."""
    from ml.features.online import refresh_online
    from paydata import settings

    name = fresh_database(prefix="loop")
    conn = admin_connect(name)
    create_staging_layout(conn, admin_connect)
    world = GeneratedWorld(conn, START, days_of_fx=SHIFTED_DAY + 2, payments_per_day=1000, seed=7)
    world.add_days(0, TRAINING_DAYS, seed=7)
    world.add_days(SHIFTED_DAY, 1, seed=7, shift=WorldShift(covariate=True))
    world.build(DEFINITIONS)
    refresh_online(conn, DEFINITIONS, mongo_db)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("PAYDATA_MLFLOW_ARTIFACTS", str(tmp_path / "artifacts"))
    real_connect = settings.pg_connect

    def warehouse_connect(conn_id: str, **overrides):
        # The scratch warehouse has no role matrix: its owner stands in for the ml role here (the
        # ml role's own grants are replayed in tests/security/test_privileges.py).
        if conn_id not in (settings.WAREHOUSE_CONN_ID, settings.WAREHOUSE_ML_CONN_ID):
            return real_connect(conn_id, **overrides)
        return admin_connect(name)

    monkeypatch.setattr(settings, "pg_connect", warehouse_connect)
    return {"conn": conn, "world": world, "tracking_uri": uri, "database": mongo_db}


class SteadyLoad:
    """Sends ``/v1/score`` requests at ``rate`` per second from a thread pool until stopped; keeps
    (sent, answered, status, model version or error name) per request."""

    def __init__(self, base_url: str, key: str, payloads: list[dict], rate: float):
        self.base_url, self.key, self.payloads, self.rate = base_url, key, payloads, rate
        self.answers: list[tuple[float, float, int, str | None]] = []
        self._stop = threading.Event()
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=16)
        self._thread = threading.Thread(target=self._schedule, daemon=True)

    def _send(self, index: int) -> None:
        import httpx

        if not hasattr(self._local, "http"):
            # generous: the server shares the process with training and Evidently
            self._local.http = httpx.Client(base_url=self.base_url, headers={"X-API-Key": self.key}, timeout=60)
        sent = time.monotonic()
        try:
            response = self._local.http.post("/v1/score", json=self.payloads[index % len(self.payloads)])
            version = response.json().get("model_version") if response.status_code == 200 else None
            self.answers.append((sent, time.monotonic(), response.status_code, version))
        except httpx.HTTPError as exc:
            self.answers.append((sent, time.monotonic(), 0, type(exc).__name__))

    def _schedule(self) -> None:
        start, index = time.monotonic(), 0
        while not self._stop.is_set():
            self._pool.submit(self._send, index)
            index += 1
            self._stop.wait(max(0.0, start + index / self.rate - time.monotonic()))

    def served(self, version: str, *, after: float = 0.0, timeout: float = 60.0) -> float:
        """When the first request sent after ``after`` was answered by ``version`` (waits for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answered = [a for s, a, status, v in list(self.answers) if s > after and status == 200 and v == version]
            if answered:
                return min(answered)
            time.sleep(0.1)
        raise AssertionError(f"v{version} was not served within {timeout:.0f} s")

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)


def test_a_shifted_world_is_detected_retrained_gated_and_served_without_a_failed_request(loop_world,
                                                                                          scorer_factory):
    from mlflow.tracking import MlflowClient

    from ml.monitoring.jobs import retrain_event, run_pass
    from ml.registry.gate import CHAMPION, MODEL_NAME
    from ml.scoring.client import ScorerClient
    from ml.scoring.warehouse import score_new_charges
    from ml.serving.sample import ServerThread, charges
    from ml.training.jobs import make_training_set, train_from_reference
    from ml.training.run import train_and_register

    conn, uri = loop_world["conn"], loop_world["tracking_uri"]
    registry = MlflowClient(uri)

    def champion() -> str:
        return str(registry.get_model_version_by_alias(MODEL_NAME, CHAMPION).version)

    # The synthetic loader stamps its commits with the clock, so the DAG steps get the pass's time
    # as a param (in a deployment the default, the latest commit the marts hold, is that time).
    as_of = loop_world["world"].day(SHIFTED_DAY + 1).isoformat()
    # the first champion: weak, trained on the matured labels there are (the training days)
    first_set = make_training_set({"label_as_of": as_of})
    assert first_set["row_count"] >= 1000 and first_set["fraud_count"] >= 10, first_set
    weak = train_and_register(conn, first_set["training_set_id"], tracking_uri=uri, params=WEAK)
    if not weak["promoted"]:   # an operator's choice: the gate is tested in test_ml_training
        registry.set_registered_model_alias(MODEL_NAME, CHAMPION, weak["model_version"])
    v1 = weak["model_version"]

    made = scorer_factory(uri, DEFINITIONS, loop_world["database"], poll=True, poll_seconds=POLL_SECONDS)
    payloads = charges(conn, 300)
    with ServerThread(made.app) as base_url, SteadyLoad(base_url, made.key, payloads, RATE) as load:
        load.served(v1)

        # fraud_monitor: the pass over the shifted day requests retraining
        summary = run_pass({"as_of": as_of})
        assert summary["model_version"] == v1
        assert summary["feature_status"] == "drift" and "amount_usd" in summary["drifted"], summary
        assert summary["decision"] == "retrain" and summary["alert"], summary
        event = retrain_event(summary)
        assert event is not None and event["model_version"] == v1 and event["as_of"] == as_of
        assert event["monitoring_run_id"] == summary["monitoring_run_id"]

        # fraud_train on that event: training set (labels as known at the pass), challenger, gate
        retrain_started = time.monotonic()
        retrained = train_from_reference(make_training_set({"label_as_of": event["as_of"]}))
        assert retrained["promoted"], retrained["reason"]
        v2 = retrained["model_version"]
        assert champion() == v2 != v1

        # the running service picks the new champion up, without a restart
        first_v2 = load.served(v2)
        assert first_v2 > retrain_started

        # fraud_score against the running service: the charges within the online horizon of its
        # clock get the new champion's scores, the older ones are counted, not sent
        newest = max(dt.datetime.fromisoformat(p["created_at"]) for p in payloads)
        scored = score_new_charges(conn, ScorerClient(base_url, made.key), now=newest + dt.timedelta(minutes=1))
        assert scored["scored"] > 0 and scored["model_versions"] == {v2: scored["scored"]}
        with conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM marts.fct_charge WHERE NOT is_deleted")
            (charges_loaded,) = cursor.fetchone()
        conn.rollback()
        assert scored["skipped_too_old"] > 0 and scored["scored"] + scored["skipped_too_old"] == charges_loaded

        # a challenger that fails the gate: champion and served version stay
        refused = train_and_register(conn, first_set["training_set_id"], tracking_uri=uri, params=WEAK)
        assert not refused["promoted"], refused["reason"]
        assert "below the margin" in refused["reason"]
        refused_at = time.monotonic()
        assert champion() == v2
        time.sleep(15 * POLL_SECONDS)   # many polls of the alias, under load
        assert made.holder.current.version == v2
        ended_at = time.monotonic()

    answers = load.answers
    failed = [a for a in answers if a[2] != 200]
    assert not failed, failed[:5]
    assert len(answers) >= RATE * 10   # the load really ran through the whole loop
    assert {a[3] for a in answers} == {v1, v2}   # the refused challenger was never served
    # once the new champion answered, every request sent later got it
    assert {version for sent, _, _, version in answers if sent > first_v2} == {v2}
    assert any(refused_at < sent < ended_at for sent, *_ in answers)
    assert registry.get_model_version(MODEL_NAME, refused["model_version"]).tags["gate.promoted"] == "False"
