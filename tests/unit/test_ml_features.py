"""Feature definitions, the SQL builder's output shape, session signals (pure logic)."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from ml.features.definitions import DefinitionError, definitions_from_dict, definitions_hash, load_definitions
from ml.features.sessions import encode_signals, session_signals
from ml.features.sql_builder import feature_names, fragments, window_params
from ml.features.window_builder import rebuild_names, rebuild_query

UTC = dt.UTC
DEFINITIONS = load_definitions()


def test_definitions_cover_the_required_signals():
    names = {a.name for a in DEFINITIONS.aggregates}
    for entity in ("customer", "card"):
        for window in ("1h", "24h", "7d"):
            assert f"{entity}_charges_{window}" in names and f"{entity}_amount_usd_{window}" in names
    assert {"device_cards_24h", "ip_cards_24h", "customer_decline_ratio_24h", "amount_to_customer_avg_30d",
            "bin_ip_country_mismatch", "merchant_risk_tier", "hour_of_day", "session_events_before",
            "session_seconds_before", "customer_devices_24h"} <= set(DEFINITIONS.model_features)
    assert all(a.ttl >= DEFINITIONS.windows[a.window] for a in DEFINITIONS.aggregates)


def test_hash_ignores_key_order_and_changes_with_content():
    raw = copy.deepcopy(DEFINITIONS.raw)
    reordered = dict(reversed(list(raw.items())))
    assert definitions_hash(definitions_from_dict(reordered)) == definitions_hash(DEFINITIONS)
    raw["windows"]["1h"] = "2 hours"
    assert definitions_hash(definitions_from_dict(raw)) != definitions_hash(DEFINITIONS)


@pytest.mark.parametrize("change, message", [
    (lambda r: r["aggregates"][0].update(entity="planet"), "unknown entity"),
    (lambda r: r["aggregates"][0].update(window="5y"), "window"),
    (lambda r: r["aggregates"][3].update(column="amount; DROP TABLE x"), "needs a column"),
    (lambda r: r["aggregates"][0].update(aggregation="median"), "aggregation"),
    (lambda r: r["aggregates"][0].update(name="Bad Name"), "identifier"),
    (lambda r: r["model_features"].append("nope"), "model_features"),
    (lambda r: r["derived"][0].update(args=["nope", "customer_charges_24h"]), "unknown inputs"),
    (lambda r: r["baseline_rules"][0].update(op="~"), "baseline rule"),
    (lambda r: r["aggregates"].append(dict(r["aggregates"][0])), "repeat"),
])
def test_malformed_definitions_are_refused_with_the_entry_named(change, message):
    raw = copy.deepcopy(DEFINITIONS.raw)
    change(raw)
    with pytest.raises(DefinitionError, match=message):
        definitions_from_dict(raw)


def test_builder_columns_and_fragments():
    names = feature_names(DEFINITIONS)
    assert names[:3] == ["customer_charges_1h", "customer_charges_24h", "customer_charges_7d"]
    assert feature_names(DEFINITIONS, entities=("ip",), lookups=False, request=False) == [
        "ip_cards_24h", "ip_charges_24h"]
    assert {"count", "sum", "avg", "count_distinct", "seconds_since_last", "entity_lateral", "query"} <= set(
        fragments())


T = dt.datetime(2026, 3, 1, 12, tzinfo=UTC)
SESSION = [
    {"session_id": "tok_s", "bucket": 0, "started_at": T - dt.timedelta(minutes=5),
     "device": {"type": "mobile"}, "geo": {"country_code": "BR"},
     "events": [{"event": "page_view", "ts": T - dt.timedelta(minutes=4)},
                {"event": "checkout_start", "ts": T - dt.timedelta(seconds=1)},
                {"event": "payment_submit", "ts": T}]},
    {"session_id": "tok_s", "bucket": 1, "events": [{"event": "page_view", "ts": T + dt.timedelta(minutes=1)}]},
]


def test_session_signals_count_only_what_happened_strictly_before():
    signals = session_signals(SESSION, T)
    assert signals == {"events_before": 2, "seconds_since_start": 300.0, "ip_country_code": "BR",
                       "device_type": "mobile"}
    later = session_signals(SESSION, T + dt.timedelta(minutes=2))
    assert later["events_before"] == 4
    # a session that starts at or after the payment tells nothing about it; naive times are UTC
    assert session_signals(SESSION, T - dt.timedelta(minutes=5))["events_before"] is None
    assert session_signals([], T)["ip_country_code"] is None
    naive = [dict(SESSION[0], started_at=(T - dt.timedelta(minutes=5)).replace(tzinfo=None))]
    assert session_signals(naive, T)["seconds_since_start"] == 300.0
    assert encode_signals(DEFINITIONS, signals)["session_device_type"] == 1


def test_windows_are_bound_as_fixed_microsecond_lengths():
    params = window_params(DEFINITIONS)
    assert params["window_24h"] == "86400000000 microseconds" and params["window_us_24h"] == 86_400_000_000
    assert params["window_7d"] == "604800000000 microseconds"


def test_set_based_formulations_render_from_the_same_definitions():
    join, _ = rebuild_query(DEFINITIONS, "join")
    window, params = rebuild_query(DEFINITIONS, "window")
    assert rebuild_names(DEFINITIONS)[:3] == ["customer_charges_1h", "customer_charges_24h", "customer_charges_7d"]
    assert sorted(rebuild_names(DEFINITIONS)) == sorted(feature_names(DEFINITIONS))
    assert "window_us_30d" in params and "window_90d" in params
    with pytest.raises(ValueError, match="formulation"):
        rebuild_query(DEFINITIONS, "lateral")
    assert join != window
