"""Score charges: online features + request attributes -> the model's inputs -> score, band, reasons.

The inputs are built by the code the offline store uses (:func:`ml.features.vector.feature_row`),
then the derived features and the input array by :class:`ml.features.vector.ModelInputs`, the
one-row twin of training's ``model_matrix`` (no pandas on the request path), so a charge scored
here gets the inputs its offline row would have had with the same store contents (the skew test
checks it).
"""

from __future__ import annotations

import time

import numpy as np

from ml.features.definitions import Definitions
from ml.features.vector import MERCHANT_LOOKUP, ModelInputs, document_ids, feature_row
from ml.serving.feature_store import OnlineFeatureStore
from ml.serving.metrics import ScorerMetrics
from ml.serving.model import LoadedModel
from ml.serving.schemas import ChargeAttributes, ScoreResponse

USD_MINOR_UNITS = 100


def attributes_of(charge: ChargeAttributes) -> dict:
    """The charge in the offline store's column names (``features.charge_event``)."""
    amount_usd = charge.amount_usd
    if amount_usd is None and charge.currency == "USD":
        amount_usd = charge.amount / USD_MINOR_UNITS
    return {"customer_id": charge.customer_token, "card_fingerprint": charge.card_token,
            "device_id": charge.device_token, "ip_address_token": charge.ip_token,
            "session_id": charge.session_token, "merchant_id": charge.merchant_id,
            "amount_usd": amount_usd, "card_country_code": charge.card_country}


class Scorer:
    def __init__(self, definitions: Definitions, store: OnlineFeatureStore, metrics: ScorerMetrics,
                 reasons: int = 3):
        self.definitions, self.store, self.metrics, self.reasons = definitions, store, metrics, reasons
        self.model_inputs = ModelInputs(definitions)
        self.entities = (*definitions.aggregate_entities, MERCHANT_LOOKUP)
        request_names = {item["name"] for item in definitions.request}
        self.unknown_when_unavailable = dict.fromkeys(
            name for name in definitions.stored_columns if name not in request_names)

    def inputs(self, charges: list[ChargeAttributes], timings: dict[str, float] | None = None
               ) -> tuple[np.ndarray, list[list[str]], bool]:
        """Model inputs of the charges (rows x ``model_features``), the entities each missed, and
        whether the store answered; ``timings["lookup"]``: seconds of the store lookup."""
        attributes = [attributes_of(charge) for charge in charges]
        ids = [document_ids(self.definitions, a) for a in attributes]
        started = time.perf_counter()
        lookup = self.store.lookup([i for per_charge in ids for i in per_charge.values()],
                                   [a["session_id"] for a in attributes if a["session_id"]])
        elapsed = time.perf_counter() - started
        self.metrics.lookup.observe(elapsed)
        if timings is not None:
            timings["lookup"] = elapsed
        rows, misses = [], []
        entities = self.entities
        for charge, attrs, per_charge in zip(charges, attributes, ids, strict=True):
            if not lookup.available:
                documents = {}
                missed = entities
                for entity in entities:
                    self.metrics.feature_misses.labels(entity=entity, reason="unavailable").inc()
            else:
                documents = {e: lookup.documents[i] for e, i in per_charge.items() if i in lookup.documents}
                missed = [e for e in entities if e not in documents]
                for entity in missed:
                    self.metrics.feature_misses.labels(entity=entity, reason="absent").inc()
            row = feature_row(self.definitions, documents, attrs, charge.created_at,
                              lookup.sessions.get(attrs["session_id"], []))
            if not lookup.available:  # unknown, not "no history": the store did not say
                row.update(self.unknown_when_unavailable)
            rows.append(row)
            misses.append(list(missed))
        return self.model_inputs.matrix(rows), misses, lookup.available

    def score(self, model: LoadedModel, charges: list[ChargeAttributes],
              timings: dict[str, float] | None = None) -> list[ScoreResponse]:
        """Score with ``model`` (the caller's snapshot of the served model, kept for the whole
        request); ``timings`` receives the lookup's seconds (:meth:`inputs`)."""
        inputs, misses, available = self.inputs(charges, timings)
        scores, reasons = model.score_with_reasons(inputs, self.reasons)
        results = []
        for charge, score, why, missed in zip(charges, scores, reasons, misses, strict=True):
            band = model.band(float(score))
            self.metrics.scores.observe(float(score))
            self.metrics.decisions.labels(band=band).inc()
            results.append(ScoreResponse(charge_id=charge.charge_id, score=float(score), band=band,
                                         model_version=model.version, reasons=why, feature_misses=missed,
                                         features_degraded=not available))
        return results
