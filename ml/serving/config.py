"""The scorer's settings, in one place, from environment variables (a ConfigMap in Kubernetes).

| variable | default | what |
|---|---|---|
| ``MLFLOW_TRACKING_URI`` | the local stack's store | the registry the model and its alias are read from |
| ``PAYDATA_SCORER_MODEL_NAME`` | ``fraud_scoring`` | registered model |
| ``PAYDATA_SCORER_MODEL_ALIAS`` | ``champion`` | the alias served (polled for hot reload) |
| ``PAYDATA_SCORER_POLL_SECONDS`` | ``10`` | how often the alias is polled |
| ``PAYDATA_SCORER_FEATURE_TIMEOUT_MS`` | ``50`` | bound on the feature lookup of one request (both queries) |
| ``PAYDATA_SCORER_MONGO_CONN_ID`` | ``paydata_mongo_scorer`` | Airflow-style connection of the online store (the read-only scorer user) |
| ``PAYDATA_SCORER_API_KEYS_FILE`` | (required) | hashed API keys, one per line (:mod:`ml.serving.auth`) |
| ``PAYDATA_SCORER_REASONS`` | ``3`` | reason codes per answer |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ml.registry.gate import CHAMPION, MODEL_NAME

# A batch is bounded so one caller cannot hold a worker for long (each row costs a model call
# for its reason codes); the body limit is checked before anything is parsed.
MAX_BATCH = 1000
MAX_BODY_BYTES = 2_000_000


@dataclass(frozen=True)
class ServingSettings:
    tracking_uri: str
    api_keys_file: Path | None
    model_name: str = MODEL_NAME
    alias: str = CHAMPION
    poll_seconds: float = 10.0
    feature_timeout_ms: int = 50
    mongo_conn_id: str = "paydata_mongo_scorer"
    reasons: int = 3

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServingSettings:
        from paydata import settings

        env = os.environ if environ is None else environ
        keys = env.get("PAYDATA_SCORER_API_KEYS_FILE")
        return cls(tracking_uri=env.get("MLFLOW_TRACKING_URI") or settings.mlflow_tracking_uri(),
                   api_keys_file=Path(keys) if keys else None,
                   model_name=env.get("PAYDATA_SCORER_MODEL_NAME", MODEL_NAME),
                   alias=env.get("PAYDATA_SCORER_MODEL_ALIAS", CHAMPION),
                   poll_seconds=float(env.get("PAYDATA_SCORER_POLL_SECONDS", "10")),
                   feature_timeout_ms=int(env.get("PAYDATA_SCORER_FEATURE_TIMEOUT_MS", "50")),
                   mongo_conn_id=env.get("PAYDATA_SCORER_MONGO_CONN_ID", settings.MONGO_SCORER_CONN_ID),
                   reasons=int(env.get("PAYDATA_SCORER_REASONS", "3")))
