"""Pure logic of the scorer: reading online documents at a charge's time, request values, API keys,
decision thresholds, the kustomize merge."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from ml.features.definitions import load_definitions
from ml.features.vector import EMPTY_VALUE, aggregate_value, document_ids, feature_row, request_values
from ml.serving import auth
from ml.serving.kustomize import merge
from ml.training.serving_config import decision_thresholds

DEFINITIONS = load_definitions()
AGGREGATES = {a.name: a for a in DEFINITIONS.aggregates}
T = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


def document(name: str, value, as_of=T, ttl=dt.timedelta(hours=1)):
    return {"values": {name: value}, "expires_at": {name: as_of + ttl}, "as_of": as_of}


def test_a_value_reads_as_stored_until_it_expires_then_as_no_history():
    count = AGGREGATES["customer_charges_1h"]
    window = DEFINITIONS.windows["1h"]
    doc = document("customer_charges_1h", 3.0)
    assert aggregate_value(count, doc, T + dt.timedelta(minutes=59), window) == 3.0
    assert aggregate_value(count, doc, T + dt.timedelta(hours=1), window) == 0.0   # exactly at expiry
    average = AGGREGATES["customer_authorised_amount_avg_30d"]
    assert aggregate_value(average, document(average.name, 10.0, ttl=dt.timedelta(days=30)),
                           T + dt.timedelta(days=31), DEFINITIONS.windows["30d"]) is None
    assert aggregate_value(count, None, T, window) == EMPTY_VALUE["count"] == 0.0


def test_seconds_since_last_grows_with_the_time_since_the_document_and_ends_with_its_window():
    since = AGGREGATES["customer_seconds_since_last_charge"]
    window = DEFINITIONS.windows[since.window]
    doc = document(since.name, 100.0, ttl=window)
    assert aggregate_value(since, doc, T + dt.timedelta(seconds=50), window) == 150.0
    assert aggregate_value(since, doc, T - dt.timedelta(seconds=50), window) == 100.0  # never negative time
    assert aggregate_value(since, doc, T + window - dt.timedelta(seconds=50), window) is None


def test_document_ids_skip_entities_with_a_missing_key_part():
    ids = document_ids(DEFINITIONS, {"customer_id": "tok_c", "card_fingerprint": "pm:7", "device_id": None,
                                     "ip_address_token": "tok_ip", "merchant_id": 12})
    assert ids == {"customer": "customer:tok_c", "card": "card:pm:7", "ip": "ip:tok_ip",
                   "merchant_lookup": "merchant_lookup:12"}


def test_request_values_take_the_utc_hour_and_keep_categories():
    at = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert request_values(DEFINITIONS, {"amount_usd": 12.5, "card_country_code": "FR"}, at) == {
        "amount_usd": 12.5, "hour_of_day": 4.0, "card_country_code": "FR"}


def test_a_charge_without_documents_reads_like_a_first_charge():
    row = feature_row(DEFINITIONS, {}, {"amount_usd": 5.0, "card_country_code": "DE"}, T)
    assert row["customer_charges_24h"] == 0.0 and row["customer_authorised_amount_avg_30d"] is None
    assert row["merchant_mcc_high_risk"] == 0.0 and row["merchant_risk_tier"] is None
    assert row["session_events_before"] is None


def test_api_keys_match_only_the_key_itself(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# comment\n\n" + auth.key_line("warehouse", "s3cret-key") + "\n")
    keys = auth.ApiKeys.from_file(path)
    assert keys.caller("s3cret-key") == "warehouse"
    assert keys.caller("s3cret-ke") is None and keys.caller("") is None and keys.caller(None) is None
    assert keys.caller(auth.digest("s3cret-key")) is None   # the stored digest is not a key
    assert "s3cret" not in path.read_text()
    assert auth.presented_key("Bearer abc", None) == "abc" and auth.presented_key("bearer  abc ", None) == "abc"
    assert auth.presented_key("Basic abc", None) is None and auth.presented_key(None, " k ") == "k"
    path.write_text("warehouse plain-text-key\n")
    with pytest.raises(auth.KeysFileError, match=":1:") as raised:
        auth.ApiKeys.from_file(path)
    assert "plain-text-key" not in str(raised.value)
    with pytest.raises(auth.KeysFileError):
        auth.ApiKeys.from_file(None)


def test_thresholds_are_ordered_probabilities_with_a_bounded_review_band():
    rng = np.random.default_rng(0)
    labels = rng.random(5000) < 0.02
    scores = np.clip(labels * 0.4 + rng.random(5000) * 0.3, 0, 1)
    thresholds = decision_thresholds(labels, scores)
    assert 0 <= thresholds["review"] <= thresholds["decline"] <= 1
    in_review = np.mean((scores >= thresholds["review"]) & (scores < thresholds["decline"]))
    assert in_review <= 0.031


def test_kustomize_merge_merges_maps_and_named_lists_and_replaces_other_lists():
    base = {"spec": {"replicas": 2, "containers": [{"name": "a", "image": "x:1", "args": ["1"]}], "tags": [1, 2]}}
    patch = {"spec": {"replicas": 3, "containers": [{"name": "a", "args": ["2"]}, {"name": "b"}], "tags": [3]}}
    assert merge(base, patch) == {"spec": {"replicas": 3, "tags": [3], "containers": [
        {"name": "a", "image": "x:1", "args": ["2"]}, {"name": "b"}]}}
    assert base["spec"]["replicas"] == 2  # inputs untouched
