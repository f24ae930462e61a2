"""A client of the scoring API's batch endpoint (httpx), with bounded retries.

The endpoint and key come from the Airflow connection ``paydata_fraud_scorer`` (``host``, ``port``,
``schema`` http/https, the API key as ``password``) through :mod:`paydata.settings`. A 503 (no model
loaded yet, or the pod is going away) and connection errors are retried with backoff; a 4xx is a
bug of the caller and raised at once.
"""

from __future__ import annotations

import time
from typing import Any

RETRIES = 4
BACKOFF_SECONDS = 1.0


class ScoringError(RuntimeError):
    """The API refused or did not answer a batch; the message has the status, never the payload."""


class ScorerClient:
    def __init__(self, base_url: str, api_key: str, *, timeout_seconds: float = 30.0, transport=None):
        import httpx

        self._http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"},
                                  timeout=timeout_seconds, transport=transport)

    @classmethod
    def from_connection(cls, conn_id: str | None = None) -> ScorerClient:
        from paydata import settings

        connection = settings.connection(conn_id or settings.FRAUD_SCORER_CONN_ID)
        scheme = connection.schema or "http"
        return cls(f"{scheme}://{connection.host}:{connection.port}", connection.password or "")

    def score_batch(self, charges: list[dict[str, Any]]) -> dict[str, Any]:
        import httpx

        for attempt in range(RETRIES + 1):
            try:
                response = self._http.post("/v1/score/batch", json={"charges": charges})
            except httpx.TransportError as exc:
                if attempt == RETRIES:
                    raise ScoringError(f"scoring API unreachable: {type(exc).__name__}") from exc
            else:
                if response.status_code == 200:
                    return response.json()
                if response.status_code != 503 or attempt == RETRIES:
                    raise ScoringError(f"scoring API answered {response.status_code}: {response.text[:300]}")
            time.sleep(BACKOFF_SECONDS * 2 ** attempt)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()
