"""Hot reload against the real registry: a broken version is refused while the old one serves,
and moving the champion alias under steady load is served without a failed request."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.integration

MODEL = "fraud_scoring"


@pytest.fixture
def registry(scoring_world):
    """The MLflow client of the shared store; the champion alias is put back after the test."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(scoring_world["tracking_uri"])
    yield client
    client.set_registered_model_alias(MODEL, "champion", scoring_world["model_version"])


def register_one_class_model(scoring_world) -> str:
    """A version with the right inputs and configuration whose model knows one class only: it loads,
    but ``predict_proba`` has no fraud column, so it cannot score the canary."""
    import mlflow
    import pandas as pd
    from sklearn.dummy import DummyClassifier

    from ml.training.serving_config import SERVING_ARTIFACT

    features = list(scoring_world["definitions"].model_features)
    frame = pd.DataFrame([[0.0] * len(features)] * 4, columns=features)
    model = DummyClassifier(strategy="prior").fit(frame, [0, 0, 0, 0])
    with mlflow.start_run():
        mlflow.log_dict({"features": features, "thresholds": {"review": 0.1, "decline": 0.5},
                         "reason_reference": dict.fromkeys(features, 0.0)}, SERVING_ARTIFACT)
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=MODEL)
    return str(info.registered_model_version)


def test_a_broken_version_is_refused_and_the_old_model_keeps_serving(scoring_app, scoring_world, registry):
    from fastapi.testclient import TestClient

    from ml.serving.sample import charges

    made = scoring_app()
    charge = charges(scoring_world["conn"], 1)[0]
    auth = {"X-API-Key": made.key}
    with TestClient(made.app) as http:
        assert made.holder.current.version == scoring_world["model_version"]
        before = http.post("/v1/score", json=charge, headers=auth).json()
        # 1. a version that cannot score the canary
        broken = register_one_class_model(scoring_world)
        registry.set_registered_model_alias(MODEL, "champion", broken)
        assert made.holder.poll_once() == "refused"
        assert "canary" in made.holder.refused[broken]
        # 2. a version whose artifacts are gone
        missing = register_one_class_model(scoring_world)
        model_id = registry.get_model_version(MODEL, missing).source.rsplit("/", 1)[-1]
        location = registry.get_logged_model(model_id).artifact_location
        shutil.rmtree(location.removeprefix("file://"))
        registry.set_registered_model_alias(MODEL, "champion", missing)
        assert made.holder.poll_once() == "refused"
        assert "failed to load" in made.holder.refused[str(missing)]
        assert made.holder.poll_once() == "known_refused"  # not reloaded on every poll
        after = http.post("/v1/score", json=charge, headers=auth)
        assert after.status_code == 200
        assert after.json()["model_version"] == scoring_world["model_version"]
        assert after.json()["score"] == before["score"]
        assert http.get("/readyz").status_code == 200
        assert 'fraud_scorer_model_reloads_total{outcome="refused"} 2.0' in http.get("/metrics").text


def test_moving_the_champion_under_load_is_served_without_a_failed_request(scoring_app, scoring_world, registry):
    import httpx

    from ml.serving.sample import ServerThread, charges

    made = scoring_app(poll=True, poll_seconds=0.2)
    running = ServerThread(made.app)
    port = running.port
    payloads = charges(scoring_world["conn"], 200)
    rate, seconds = 200, 4.0
    answers: list[tuple[float, float, int, str | None]] = []  # (sent, answered, status, version)
    local = threading.local()

    def send(index: int, due: float) -> None:
        time.sleep(max(0.0, due - time.monotonic()))
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": made.key},
                                      timeout=10)
        sent = time.monotonic()
        try:
            response = local.http.post("/v1/score", json=payloads[index % len(payloads)])
            version = response.json().get("model_version") if response.status_code == 200 else None
            answers.append((sent, time.monotonic(), response.status_code, version))
        except httpx.HTTPError as exc:
            answers.append((sent, time.monotonic(), 0, type(exc).__name__))

    with running:
        good = registry.get_model_version(MODEL, scoring_world["model_version"])
        new = str(registry.create_model_version(MODEL, source=good.source, run_id=good.run_id).version)
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=32) as pool:
            for index in range(int(rate * seconds)):
                pool.submit(send, index, start + index / rate)
                if index == int(rate * seconds / 3):
                    moved_at = time.monotonic()
                    registry.set_registered_model_alias(MODEL, "champion", new)
    assert len(answers) == int(rate * seconds)
    failed = [a for a in answers if a[2] != 200]
    assert not failed, failed[:5]
    assert {a[3] for a in answers} == {scoring_world["model_version"], new}
    # the new version answers only after the alias moved, and once it has answered, every request
    # sent later gets it (requests already in flight may still finish on the old one)
    first_new = min(answered for _, answered, _, version in answers if version == new)
    assert first_new > moved_at
    assert {version for sent, _, _, version in answers if sent > first_new} == {new}


def test_the_model_loads_from_the_scorers_registry_whatever_the_process_tracking_uri_is(scoring_app, scoring_world,
                                                                                         tmp_path):
    import mlflow

    made = scoring_app()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}")  # e.g. a training run in the same process
    assert made.holder.poll_once() == "loaded"
    assert made.holder.current.version == scoring_world["model_version"]
