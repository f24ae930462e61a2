"""The scoring API (FastAPI).

| route | auth | what |
|---|---|---|
| ``POST /v1/score`` | API key | one charge -> score, band, model version, reasons, feature misses |
| ``POST /v1/score/batch`` | API key | up to ``MAX_BATCH`` charges, one model version for all |
| ``GET /healthz`` | none | liveness: the process answers |
| ``GET /readyz`` | none | 200 when a model is loaded and the online store answers a ping, else 503 |
| ``GET /metrics`` | none | Prometheus text format (keep it inside the cluster: NetworkPolicy) |

A scored answer carries a ``Server-Timing`` header: the feature lookup's and the whole handler's
milliseconds (no payload in it). Bad input is a 422 listing each field and what is wrong with it, without echoing the values
back; a body over ``MAX_BODY_BYTES`` is a 413 before it is parsed; no key or a wrong key is a 401.
Nothing of a request's payload is logged.

``/v1/score`` runs on the event loop although the store client and the model block: one charge
costs about 2 ms (two indexed Mongo reads, the inputs, one model call), and handing it to the
thread pool costs more than that under load (the loop and the worker thread pass the GIL back and
forth, each wait up to the interpreter's 5 ms switch interval), while one worker serves one
request at a time either way. ``/v1/score/batch`` (up to ``MAX_BATCH`` charges) and ``/readyz`` (a
ping) run in the thread pool so they never hold the loop. The answer is serialised once from the
response model (``model_dump_json``), not validated again.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from ml.serving import auth
from ml.serving.config import MAX_BODY_BYTES
from ml.serving.reloader import ModelHolder
from ml.serving.schemas import BatchRequest, BatchResponse, ChargeAttributes, ScoreResponse
from ml.serving.scorer import Scorer

log = logging.getLogger(__name__)
JSON = "application/json"


class BoundedBody:
    """ASGI middleware: a POST without Content-Length is a 411, one above ``MAX_BODY_BYTES`` a 413,
    before the body is read (plain ASGI: Starlette's ``BaseHTTPMiddleware`` costs a task per request)."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            length = next((value for name, value in scope["headers"] if name == b"content-length"), None)
            refusal = None
            if length is None:
                self.metrics.errors.labels(kind="length_required").inc()
                refusal = JSONResponse({"detail": "Content-Length required"}, status_code=411)
            elif not length.isdigit() or int(length) > MAX_BODY_BYTES:
                self.metrics.errors.labels(kind="too_large").inc()
                refusal = JSONResponse({"detail": f"body larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def server_timing(**seconds: float) -> str:
    """A ``Server-Timing`` header (W3C): where the scorer's time went, in milliseconds, so a caller
    (or the benchmark) can tell the scorer's time from time spent queueing before it."""
    return ", ".join(f"{name};dur={1000 * value:.2f}" for name, value in seconds.items())


def create_app(*, holder: ModelHolder, scorer: Scorer, keys: auth.ApiKeys, poll: bool = True) -> FastAPI:
    """The app over an already built holder, scorer and key set (``poll``: run the reload thread)."""
    metrics = scorer.metrics
    # pymongo logs every command with its filter (the tokens) at DEBUG: never from the scorer
    logging.getLogger("pymongo").setLevel(logging.WARNING)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if holder.current is None:
            holder.poll_once()
        if poll:
            holder.start()
        yield
        holder.stop()

    app = FastAPI(title="paydata fraud scorer", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)

    app.add_middleware(BoundedBody, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError):
        metrics.errors.labels(kind="invalid_request").inc()
        details = [{"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
                   for error in exc.errors()]
        return JSONResponse({"detail": details}, status_code=422)

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception):
        metrics.errors.labels(kind="internal").inc()
        log.error("scoring failed: %s", type(exc).__name__)  # the type only: messages may quote input
        return JSONResponse({"detail": "internal error"}, status_code=500)

    async def caller(authorization: str | None = Header(None), x_api_key: str | None = Header(None)) -> str:
        name = keys.caller(auth.presented_key(authorization, x_api_key))
        if name is None:
            metrics.errors.labels(kind="unauthorized").inc()
            raise HTTPException(401, "a valid API key is required", headers={"WWW-Authenticate": "Bearer"})
        return name

    def served_model():
        model = holder.current  # read once: this request scores with this model to the end
        if model is None:
            metrics.errors.labels(kind="no_model").inc()
            raise HTTPException(503, "no model loaded yet")
        return model

    @app.post("/v1/score", response_model=ScoreResponse)
    async def score(charge: ChargeAttributes, _caller: str = Depends(caller)) -> Response:
        started = time.perf_counter()
        model = served_model()
        timings: dict[str, float] = {}
        (result,) = scorer.score(model, [charge], timings)  # on the loop: see the module doc
        elapsed = time.perf_counter() - started
        metrics.latency.labels(endpoint="score").observe(elapsed)
        return Response(result.model_dump_json(), media_type=JSON, headers={"Server-Timing": server_timing(
            lookup=timings.get("lookup", 0.0), total=elapsed)})

    @app.post("/v1/score/batch", response_model=BatchResponse)
    async def score_batch(batch: BatchRequest, _caller: str = Depends(caller)) -> Response:
        started = time.perf_counter()
        model = served_model()
        results = await run_in_threadpool(scorer.score, model, batch.charges)
        metrics.latency.labels(endpoint="batch").observe(time.perf_counter() - started)
        return Response(BatchResponse(model_version=model.version, results=results).model_dump_json(),
                        media_type=JSON)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        model, store = holder.current, scorer.store.reachable()
        body = {"model_version": model and model.version, "feature_store": "reachable" if store else "unreachable"}
        return JSONResponse(body, status_code=200 if model is not None and store else 503)

    @app.get("/metrics")
    def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def create_app_from_env() -> FastAPI:
    """The production app: settings from the environment (:mod:`ml.serving.config`)."""
    from mlflow.tracking import MlflowClient

    from ml.features.definitions import load_definitions
    from ml.serving.config import ServingSettings
    from ml.serving.feature_store import OnlineFeatureStore
    from ml.serving.metrics import ScorerMetrics
    from paydata import settings as paydata_settings

    config = ServingSettings.from_env()
    keys = auth.ApiKeys.from_file(config.api_keys_file)
    definitions = load_definitions()
    metrics = ScorerMetrics()
    import mlflow

    mlflow.set_tracking_uri(config.tracking_uri)
    holder = ModelHolder(MlflowClient(config.tracking_uri), name=config.model_name, alias=config.alias,
                         model_features=definitions.model_features, metrics=metrics,
                         poll_seconds=config.poll_seconds)
    database = paydata_settings.mongo_database(config.mongo_conn_id)
    store = OnlineFeatureStore(database, collection=definitions.online_collection,
                               timeout_seconds=config.feature_timeout_ms / 1000)
    return create_app(holder=holder, scorer=Scorer(definitions, store, metrics, config.reasons), keys=keys)
