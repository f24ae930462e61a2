"""The scoring API over a real champion, the real online store (SecantusDB) and the real registry:
answers, validation, a feature-store outage, and features equal to the offline store's."""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import threading
import time

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


class TcpProxy:
    """A TCP forwarder to the store on a free local port; ``stop()`` is the outage (the listener
    and every forwarded connection close, and new connections are refused)."""

    def __init__(self, target: tuple[str, int]):
        self.target, self.sockets, self.stopped = target, [], threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [downstream, upstream]
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source, sink) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.close()
                except OSError:
                    pass

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()
        for end in self.sockets:
            try:
                end.shutdown(socket.SHUT_RDWR)
                end.close()
            except OSError:
                pass


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def served(scoring_app):
    made = scoring_app()
    with TestClient(made.app) as client:
        made.client = client
        yield made


def test_a_charge_gets_a_score_band_version_and_reasons(served, scoring_world):
    from ml.serving.sample import charges

    charge = charges(scoring_world["conn"], 1)[0]
    response = served.client.post("/v1/score", json=charge, headers=headers(served.key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["charge_id"] == charge["charge_id"] and 0.0 <= body["score"] <= 1.0
    assert body["band"] in {"approve", "review", "decline"}
    assert body["model_version"] == scoring_world["model_version"] and not body["features_degraded"]
    # the newest charge's customer has an online document: no miss for it
    assert "customer" not in body["feature_misses"]
    assert set(body["reasons"]) <= set(scoring_world["definitions"].model_features)


def test_batch_answers_equal_single_answers_and_bands_follow_the_stored_thresholds(served, scoring_world):
    from mlflow.tracking import MlflowClient

    from ml.serving.sample import charges

    sample = charges(scoring_world["conn"], 40)
    batch = served.client.post("/v1/score/batch", json={"charges": sample}, headers=headers(served.key))
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [r["charge_id"] for r in results] == [c["charge_id"] for c in sample]
    for charge, result in list(zip(sample, results, strict=True))[:5]:
        single = served.client.post("/v1/score", json=charge, headers=headers(served.key)).json()
        assert single["score"] == pytest.approx(result["score"], abs=1e-12) and single["band"] == result["band"]
    tags = MlflowClient(scoring_world["tracking_uri"]).get_model_version(
        "fraud_scoring", scoring_world["model_version"]).tags
    review, decline = float(tags["serving.review_threshold"]), float(tags["serving.decline_threshold"])
    for result in results:
        expected = "decline" if result["score"] >= decline else "review" if result["score"] >= review else "approve"
        assert result["band"] == expected
    # a stolen-card pattern scores above the same charge made ordinary
    ordinary = dict(sample[0], created_at="2025-09-22T14:00:00+00:00", card_country=None)
    suspicious = dict(sample[0], created_at="2025-09-22T03:00:00+00:00", device_token="tok_never_seen_device",
                      customer_token="tok_never_seen_customer", amount=900000, amount_usd=9000.0)
    scores = [served.client.post("/v1/score", json=c, headers=headers(served.key)).json()["score"]
              for c in (ordinary, suspicious)]
    assert scores[1] > scores[0]


@pytest.mark.parametrize(("change", "field"), [
    ({"amount": -5}, "amount"),
    ({"currency": "usd"}, "currency"),
    ({"created_at": "2025-09-22T14:00:00"}, "created_at"),  # no timezone
    ({"created_at": "yesterday"}, "created_at"),
    ({"customer_token": {"$gt": ""}}, "customer_token"),
    ({"card_token": "tok'; DROP TABLE x; --"}, "card_token"),
    ({"amount_usd": float("inf")}, "amount_usd"),
    ({"merchant_id": 0}, "merchant_id"),
    ({"unexpected": 1}, "unexpected"),
    ({"charge_id": None}, "charge_id"),
])
def test_bad_input_is_a_422_naming_the_field_without_echoing_it(served, scoring_world, change, field):
    from ml.serving.sample import charges

    charge = {**charges(scoring_world["conn"], 1)[0], **change}
    response = served.client.post("/v1/score", content=_json(charge), headers={
        **headers(served.key), "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    details = response.json()["detail"]
    assert any(field in d["loc"] for d in details), details
    assert all(set(d) == {"loc", "msg", "type"} for d in details)
    assert "DROP TABLE" not in response.text and "$gt" not in response.text


def _json(value) -> str:
    import json

    return json.dumps(value, allow_nan=True)


def test_a_missing_body_or_an_empty_batch_is_a_422_not_a_500(served):
    assert served.client.post("/v1/score", headers=headers(served.key)).status_code == 422
    assert served.client.post("/v1/score", content=b"{not json", headers={
        **headers(served.key), "Content-Type": "application/json"}).status_code == 422
    assert served.client.post("/v1/score/batch", json={"charges": []}, headers=headers(served.key)).status_code == 422


def test_an_unknown_entity_is_a_flagged_miss_read_as_no_history(served, scoring_world):
    from ml.serving.sample import charges

    charge = dict(charges(scoring_world["conn"], 1)[0], customer_token="tok_nobody", card_token="tok_no_card",
                  device_token=None)
    body = served.client.post("/v1/score", json=charge, headers=headers(served.key)).json()
    assert {"customer", "card", "device", "customer_device"} <= set(body["feature_misses"])
    assert not body["features_degraded"]
    metrics = served.client.get("/metrics").text
    assert 'fraud_scorer_feature_misses_total{entity="customer",reason="absent"} 1.0' in metrics


def test_an_answer_says_where_the_scorers_time_went(served, scoring_world):
    import re

    from ml.serving.sample import charges

    response = served.client.post("/v1/score", json=charges(scoring_world["conn"], 1)[0], headers=headers(served.key))
    timing = dict(re.fullmatch(r"(\w+);dur=([0-9.]+)", part.strip()).groups()
                  for part in response.headers["Server-Timing"].split(","))
    assert set(timing) == {"lookup", "total"}
    assert 0 < float(timing["lookup"]) <= float(timing["total"])
    metrics = served.client.get("/metrics").text
    count = re.search(r"^fraud_scorer_feature_lookup_seconds_count ([0-9.]+)$", metrics, re.MULTILINE)
    assert count is not None and float(count.group(1)) >= 1


def test_a_feature_store_outage_degrades_to_flagged_misses_then_readyz_fails(scoring_app, scoring_world, stack):
    from ml.serving.sample import charges
    from paydata.stack import mongo_root_client

    proxy = TcpProxy(("127.0.0.1", stack.mongo_port))
    client = mongo_root_client(dataclasses.replace(stack, mongo_port=proxy.port), serverSelectionTimeoutMS=2000)
    made = scoring_app(database=client[scoring_world["database"].name], timeout_seconds=0.3)
    charge = charges(scoring_world["conn"], 1)[0]
    try:
        with TestClient(made.app) as http:
            before = http.post("/v1/score", json=charge, headers=headers(made.key)).json()
            assert not before["features_degraded"] and http.get("/readyz").status_code == 200
            proxy.stop()
            time.sleep(1.1)  # the readiness ping is cached for a second
            during = http.post("/v1/score", json=charge, headers=headers(made.key))
            assert during.status_code == 200, during.text
            body = during.json()
            assert body["features_degraded"] and "customer" in body["feature_misses"]
            assert 0.0 <= body["score"] <= 1.0
            ready = http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["feature_store"] == "unreachable"
            assert http.get("/healthz").status_code == 200
            assert 'reason="unavailable"' in http.get("/metrics").text
    finally:
        proxy.stop()
        client.close()


def test_the_scorer_builds_the_inputs_the_offline_store_holds(scoring_world, mongo_db):
    """Training/serving skew: online documents refreshed at a charge's own time and position, read
    by the scorer's code, give the same model inputs as the charge's offline row."""
    from ml.features.offline import load_training_frame
    from ml.features.online import refresh_online
    from ml.serving.feature_store import OnlineFeatureStore
    from ml.serving.metrics import ScorerMetrics
    from ml.serving.schemas import ChargeAttributes
    from ml.serving.scorer import Scorer
    from ml.training.data import model_matrix

    conn, definitions = scoring_world["conn"], scoring_world["definitions"]
    frame = load_training_frame(conn, definitions, scoring_world["training_set_id"])
    with conn.cursor() as cursor:
        cursor.execute("SELECT e.charge_id, e.known_lsn, e.session_id FROM features.charge_event e "
                       "WHERE e.session_id IS NOT NULL AND e.device_id IS NOT NULL "
                       "AND e.charge_id = ANY(%s) ORDER BY e.created_at DESC LIMIT 3",
                       (list(map(int, frame["charge_id"])),))
        picked = cursor.fetchall()
    conn.rollback()
    assert len(picked) == 3
    requests = {c["charge_id"]: c for c in _payloads(conn, [p[0] for p in picked])}
    for charge_id, known_lsn, session_id in picked:
        mongo_db["sessions"].insert_many(scoring_world["sessions"].by_session.get(session_id, []))
        created_at = dt.datetime.fromisoformat(requests[charge_id]["created_at"])
        refresh_online(conn, definitions, mongo_db, as_of=created_at, known_lsn=known_lsn, full=True)
        scorer = Scorer(definitions, OnlineFeatureStore(mongo_db, timeout_seconds=5), ScorerMetrics())
        values, _, available = scorer.inputs([ChargeAttributes(**requests[charge_id])])
        assert available and values.shape == (1, len(definitions.model_features))
        online = pd.DataFrame(values, columns=list(definitions.model_features))
        offline = model_matrix(frame[frame["charge_id"] == charge_id].reset_index(drop=True), definitions)
        # BSON dates hold milliseconds: the sessions copied into Mongo lost the microseconds the
        # in-memory ones the offline build read had (in production both read Mongo)
        np.testing.assert_allclose(online.pop("session_seconds_before"), offline.pop("session_seconds_before"),
                                   atol=1e-3, equal_nan=True)
        np.testing.assert_allclose(online.to_numpy(dtype=float), offline.to_numpy(dtype=float), rtol=1e-9,
                                   equal_nan=True, err_msg=f"charge {charge_id}")
        assert not np.isnan(online["session_events_before"].iloc[0])


def test_the_one_row_inputs_equal_model_matrix_on_every_offline_row(scoring_world):
    """The scorer's pandas-free inputs (:class:`ml.features.vector.ModelInputs`) of each stored
    offline row, one row at a time, equal training's ``model_matrix`` of the whole frame."""
    from ml.features.offline import load_training_frame
    from ml.features.vector import ModelInputs
    from ml.training.data import model_matrix

    definitions = scoring_world["definitions"]
    frame = load_training_frame(scoring_world["conn"], definitions, scoring_world["training_set_id"])
    assert len(frame) > 1000
    expected = model_matrix(frame, definitions).to_numpy()
    inputs = ModelInputs(definitions)
    rows = frame.loc[:, list(definitions.stored_columns)].to_dict("records")
    got = np.vstack([inputs.matrix([row]) for row in rows])
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(got).any() and (got == 0).any()


def _payloads(conn, charge_ids):
    from ml.scoring.warehouse import charge_request as payload
    from paydata.sql import load_sql

    with conn.cursor() as cursor:
        cursor.execute(load_sql("warehouse/queries/scoring/sample_charges.sql"), {"limit": None})
        names = [c.name for c in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    conn.rollback()
    return [payload(row) for row in rows if row["charge_id"] in set(charge_ids)]


def test_request_values_in_python_equal_the_sql_request_columns_on_every_offline_row(scoring_world):
    from ml.features.offline import load_training_frame
    from ml.features.vector import request_values

    conn, definitions = scoring_world["conn"], scoring_world["definitions"]
    frame = load_training_frame(conn, definitions, scoring_world["training_set_id"])
    with conn.cursor() as cursor:
        cursor.execute("SELECT charge_id, amount_usd, card_country_code, created_at FROM features.charge_event")
        events = {row[0]: row[1:] for row in cursor.fetchall()}
    conn.rollback()
    names = [item["name"] for item in definitions.request]
    assert len(frame) > 1000
    for row in frame.itertuples(index=False):
        amount_usd, country, created_at = events[row.charge_id]
        python = request_values(definitions, {"amount_usd": amount_usd, "card_country_code": country}, created_at)
        stored = {name: getattr(row, name) for name in names}
        assert python["hour_of_day"] == stored["hour_of_day"] and python["card_country_code"] == stored[
            "card_country_code"]
        if stored["amount_usd"] != stored["amount_usd"]:  # NaN in the frame: NULL in the store
            assert python["amount_usd"] is None, row.charge_id
        else:
            assert python["amount_usd"] == pytest.approx(stored["amount_usd"], rel=1e-12), row.charge_id
