"""Attacks on the fraud scoring API, replayed against the real app (real champion, real store):
no key, a wrong or near-miss key, a key in the URL, operator and SQL injection in tokens, an
oversized batch and body, an unbounded body, and payload leaking into logs."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

pytestmark = [pytest.mark.integration, pytest.mark.security]


@pytest.fixture
def served(scoring_app, scoring_world):
    from ml.serving.sample import charges

    made = scoring_app()
    with TestClient(made.app) as client:
        made.client = client
        made.charge = charges(scoring_world["conn"], 1)[0]
        yield made


def test_no_key_a_wrong_key_or_a_key_in_the_url_is_a_401(served):
    attempts = [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not-the-key"},
        {"Authorization": f"Basic {served.key}"},          # right key, wrong scheme
        {"Authorization": f"Bearer {served.key[:-1]}"},    # near miss
        {"X-API-Key": served.key.upper()},
        {"X-API-Key": "sha256:" + __import__("hashlib").sha256(served.key.encode()).hexdigest()},  # the stored hash
    ]
    for headers in attempts:
        response = served.client.post("/v1/score", json=served.charge, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
    assert served.client.post(f"/v1/score?api_key={served.key}", json=served.charge).status_code == 401
    assert served.client.post("/v1/score/batch", json={"charges": [served.charge]}).status_code == 401
    # the right key works both ways
    for headers in ({"Authorization": f"Bearer {served.key}"}, {"X-API-Key": served.key}):
        assert served.client.post("/v1/score", json=served.charge, headers=headers).status_code == 200
    assert 'fraud_scorer_errors_total{kind="unauthorized"} 9.0' in served.client.get("/metrics").text


@pytest.mark.parametrize("token", [
    {"$ne": None}, {"$where": "sleep(1000)"}, ["tok_a", "tok_b"], "tok_a' OR '1'='1", "tok_a\"}", "../../etc/passwd",
    "tok_a\nX-Injected: 1", "$gt", "a" * 129, "", " tok_a", "tok_a;DROP TABLE marts.fct_charge",
])
def test_injection_looking_tokens_are_refused_at_the_edge(served, token):
    for field in ("customer_token", "card_token", "device_token", "ip_token", "session_token"):
        response = served.client.post("/v1/score", json={**served.charge, field: token},
                                      headers={"X-API-Key": served.key})
        assert response.status_code == 422, (field, token)
        assert json.dumps(token) not in response.text


def test_oversized_batches_and_bodies_are_refused_before_scoring(served):
    from ml.serving.config import MAX_BATCH, MAX_BODY_BYTES

    key = {"X-API-Key": served.key}
    too_many = served.client.post("/v1/score/batch", json={"charges": [served.charge] * (MAX_BATCH + 1)},
                                  headers=key)
    assert too_many.status_code == 422 and "charges" in too_many.json()["detail"][0]["loc"]
    huge = json.dumps({**served.charge, "padding": "x" * MAX_BODY_BYTES}).encode()
    assert served.client.post("/v1/score", content=huge, headers={**key, "Content-Type": "application/json"}
                              ).status_code == 413
    # a chunked body (no Content-Length) cannot slip past the limit
    chunks = (part for part in [b'{"charge_id": 1,', b' "pad": "' + b"x" * 1000 + b'"}'])
    assert served.client.post("/v1/score", content=chunks, headers={**key, "Content-Type": "application/json"}
                              ).status_code == 411
    assert served.client.post("/v1/score", json=served.charge, headers=key).status_code == 200


def test_no_token_or_payload_reaches_the_logs(served, caplog):
    caplog.set_level(logging.DEBUG)
    key = {"X-API-Key": served.key}
    served.client.post("/v1/score", json=served.charge, headers=key)
    served.client.post("/v1/score", json={**served.charge, "amount": -1}, headers=key)
    served.client.post("/v1/score", json=served.charge, headers={"X-API-Key": "wrong"})
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for value in (served.charge["customer_token"], served.charge["card_token"], served.key, "wrong"):
        assert value not in logged
