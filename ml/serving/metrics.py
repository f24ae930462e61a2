"""The scorer's Prometheus metrics, on a registry of its own (one per app, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)


class ScorerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.latency = Histogram("fraud_scorer_request_seconds", "Time to answer a scoring request",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.lookup = Histogram("fraud_scorer_feature_lookup_seconds",
                                "Time of the online feature lookup of one request (both queries)",
                                buckets=LATENCY_BUCKETS, registry=r)
        self.scores = Histogram("fraud_scorer_score", "Fraud probabilities answered", buckets=SCORE_BUCKETS,
                                registry=r)
        self.decisions = Counter("fraud_scorer_decisions_total", "Charges scored, by decision band", ["band"],
                                 registry=r)
        self.feature_misses = Counter("fraud_scorer_feature_misses_total",
                                      "Entities scored without an online document, by reason", ["entity", "reason"],
                                      registry=r)
        self.errors = Counter("fraud_scorer_errors_total", "Requests not scored, by kind", ["kind"], registry=r)
        self.model_version = Gauge("fraud_scorer_model_version", "Registry version of the model being served",
                                   registry=r)
        self.model_loaded_at = Gauge("fraud_scorer_model_loaded_timestamp_seconds",
                                     "When the served model was loaded", registry=r)
        self.reloads = Counter("fraud_scorer_model_reloads_total", "Alias polls that found a new version, by outcome",
                               ["outcome"], registry=r)
