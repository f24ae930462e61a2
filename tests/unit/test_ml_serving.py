"""Pure logic of the scorer: reading online documents at a charge's time, request values, API keys,
decision thresholds, the kustomize merge."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from ml.features.definitions import load_definitions
from ml.features.vector import (
    EMPTY_VALUE,
    ModelInputs,
    aggregate_value,
    document_ids,
    feature_row,
    request_values,
)
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


def _generated_rows(count: int, seed: int = 7) -> list[dict]:
    """Stored-feature rows as the scorer and the offline frame hold them, with every kind of value a
    derived feature meets: missing (None and NaN), zero, a ratio's zero denominator, equal and
    different categories, whole numbers, fractions and large values."""
    rng = np.random.default_rng(seed)
    numbers = [None, np.nan, 0, 0.0, 1, 2.0, 3, 0.25, 17.5, 1e6, 250000.125]
    countries = [None, np.nan, "US", "FR", "DE"]
    rows = []
    for _ in range(count):
        row = {}
        for name in DEFINITIONS.stored_columns:
            pool = countries if name in DEFINITIONS.category_columns else numbers
            row[name] = pool[rng.integers(len(pool))]
        rows.append(row)
    rows.append(dict.fromkeys(DEFINITIONS.stored_columns))  # everything unknown
    rows.append({name: ("US" if name in DEFINITIONS.category_columns else 0.0) for name in DEFINITIONS.stored_columns})
    return rows


def test_the_one_row_inputs_equal_training_s_model_matrix_on_generated_rows():
    import pandas as pd

    from ml.training.data import model_matrix

    rows = _generated_rows(3000)
    expected = model_matrix(pd.DataFrame(rows), DEFINITIONS)
    inputs = ModelInputs(DEFINITIONS)
    got = inputs.matrix(rows)
    assert got.dtype == np.float64 and got.shape == expected.shape and got.flags.c_contiguous
    assert inputs.features == tuple(expected.columns)
    np.testing.assert_array_equal(got, expected.to_numpy())  # exact, NaN where NaN
    for index in (0, 1, len(rows) - 2, len(rows) - 1):  # one row at a time gives the same row
        np.testing.assert_array_equal(inputs.matrix([rows[index]])[0], expected.to_numpy()[index])
    derived = [item["name"] for item in DEFINITIONS.derived]
    assert np.isnan(expected[derived].to_numpy()).any() and (expected[derived].to_numpy() == 0).any()


def test_the_one_row_inputs_of_feature_rows_built_from_documents_equal_model_matrix():
    """Rows as the scorer builds them (documents present, absent, expired; sessions or none)."""
    import pandas as pd

    from ml.training.data import model_matrix

    rng = np.random.default_rng(3)
    rows = []
    for index in range(300):
        documents = {}
        for entity in DEFINITIONS.aggregate_entities:
            if rng.random() < 0.7:
                aggregates = DEFINITIONS.aggregates_of(entity)
                as_of = T - dt.timedelta(minutes=int(rng.integers(1, 3000)))
                documents[entity] = {
                    "values": {a.name: (None if rng.random() < 0.1 else float(rng.integers(0, 4))) for a in aggregates},
                    "expires_at": {a.name: as_of + a.ttl for a in aggregates}, "as_of": as_of}
        if rng.random() < 0.8:
            documents["merchant_lookup"] = {"values": {"merchant_risk_tier": float(rng.integers(0, 4)),
                                                       "merchant_mcc_high_risk": None if index % 5 else 1.0}}
        sessions = [] if index % 3 == 0 else [{"bucket": 0, "started_at": T - dt.timedelta(minutes=5),
                                               "geo": {"country_code": ["US", "FR"][index % 2]},
                                               "device": {"type": "mobile"},
                                               "events": [{"ts": T - dt.timedelta(minutes=1)}]}]
        attributes = {"amount_usd": None if index % 7 == 0 else float(rng.integers(0, 500)),
                      "card_country_code": [None, "US", "FR"][index % 3]}
        rows.append(feature_row(DEFINITIONS, documents, attributes, T, sessions))
    np.testing.assert_array_equal(ModelInputs(DEFINITIONS).matrix(rows),
                                  model_matrix(pd.DataFrame(rows), DEFINITIONS).to_numpy())


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


def test_a_calibrated_booster_is_unwrapped_to_the_same_probabilities_and_other_models_are_not():
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from ml.serving.model import model_probabilities
    from ml.training.model import fit_model

    rng = np.random.default_rng(0)
    columns = ["a", "b", "c"]
    values = rng.normal(size=(600, 3))
    values[rng.random(values.shape) < 0.1] = np.nan
    labels = (np.nan_to_num(values[:, 0]) + rng.normal(scale=0.5, size=600) > 1).astype(int)
    frame = pd.DataFrame(values, columns=columns)
    model = fit_model(frame[:400], labels[:400], frame[400:], labels[400:], {"max_iter": 30, "early_stopping": False})
    predict = model_probabilities(model, tuple(columns))
    assert predict.__name__ == "probabilities"  # the unwrapped form, not predict_proba on a DataFrame
    np.testing.assert_allclose(predict(values), model.predict_proba(frame)[:, 1], rtol=0, atol=1e-12)
    assert model.predict_proba(frame).shape == (600, 2)  # the model itself still takes column names

    plain = LogisticRegression().fit(frame.fillna(0.0), labels)
    fallback = model_probabilities(plain, tuple(columns))
    assert fallback.__name__ == "through_predict_proba"
    np.testing.assert_array_equal(fallback(np.nan_to_num(values)), plain.predict_proba(frame.fillna(0.0))[:, 1])


def test_after_a_failed_lookup_the_store_is_not_asked_again_until_the_retry_time():
    from pymongo.errors import ServerSelectionTimeoutError

    from ml.serving.feature_store import RETRY_AFTER_SECONDS, OnlineFeatureStore

    class Collection:
        def __init__(self, calls, fail):
            self.calls, self.fail = calls, fail

        def find(self, *_args, **_kwargs):
            self.calls.append("find")
            if self.fail[0]:
                raise ServerSelectionTimeoutError("store down")
            return [{"_id": "customer:c1", "values": {}}]

    calls, fail, now = [], [True], [100.0]
    database = {"features": Collection(calls, fail), "sessions": Collection(calls, fail)}
    store = OnlineFeatureStore(database, timeout_seconds=0.05, clock=lambda: now[0])
    assert not store.lookup(["customer:c1"], []).available and calls == ["find"]
    now[0] += RETRY_AFTER_SECONDS / 2
    assert not store.lookup(["customer:c1"], []).available and calls == ["find"]  # not asked: still down
    fail[0] = False
    now[0] += RETRY_AFTER_SECONDS
    found = store.lookup(["customer:c1"], [])
    assert found.available and list(found.documents) == ["customer:c1"] and calls == ["find", "find"]


@pytest.mark.parametrize("outcome", ["loaded", "refused"])
def test_a_version_loads_with_a_short_switch_interval_that_is_restored_afterwards(outcome):
    import sys
    from types import SimpleNamespace

    from ml.serving.metrics import ScorerMetrics
    from ml.serving.model import ModelRefused
    from ml.serving.reloader import LOADING_SWITCH_INTERVAL, ModelHolder

    seen = []

    def loader(_client, _name, version, _features):
        seen.append(sys.getswitchinterval())
        if outcome == "refused":
            raise ModelRefused("broken")
        return SimpleNamespace(version=version, loaded_at=0.0)

    registry = SimpleNamespace(get_model_version_by_alias=lambda _name, _alias: SimpleNamespace(version="7"))
    holder = ModelHolder(registry, name="fraud_scoring", alias="champion", model_features=(),
                         metrics=ScorerMetrics(), loader=loader)
    before = sys.getswitchinterval()
    assert before > LOADING_SWITCH_INTERVAL
    assert holder.poll_once() == outcome
    assert seen == [LOADING_SWITCH_INTERVAL]
    assert sys.getswitchinterval() == before
