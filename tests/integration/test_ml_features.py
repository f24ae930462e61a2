"""Point-in-time features: leakage, agreement with a naive reference and a window-function
formulation, training set versions, online documents equal to offline rows (real Postgres, Mongo)."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from ml.features.definitions import load_definitions
from ml.features.offline import build_features, build_training_set, load_training_frame
from ml.features.sql_builder import feature_names, feature_query
from ml.features.window_builder import rebuild_names, rebuild_query
from paydata.sql import load_sql
from paydata.warehouse import build

pytestmark = pytest.mark.integration

UTC = dt.UTC
DEFINITIONS = load_definitions()
T0 = dt.datetime(2026, 1, 5, 12, tzinfo=UTC)


def query(conn, statement, params=None):
    with conn.cursor() as cursor:
        cursor.execute(statement, params)
        rows = cursor.fetchall()
    conn.rollback()
    return rows


def attempt(staging, charge_id, customer, card, when, amount=1000, *, status="succeeded", device=None,
            ip=None, merchant=1):
    staging.put("oltp", "payment_intent", ["payment_intent_id"],
                {"payment_intent_id": charge_id, "merchant_id": merchant, "customer_id": customer,
                 "amount": amount, "currency_code": "USD", "status": "processing", "created_at": when})
    staging.put("oltp", "charge", ["charge_id"],
                {"charge_id": charge_id, "payment_intent_id": charge_id, "payment_method_id": card,
                 "amount": amount, "currency_code": "USD", "status": status,
                 "failure_code": "card_declined" if status == "failed" else None,
                 "captured": status == "succeeded", "created_at": when, "updated_at": when,
                 "ip_address": ip or f"tok_ip_{customer}", "device_id": device or f"tok_dev_{customer}",
                 "session_id": f"tok_ses_{charge_id}"})
    if status == "succeeded":
        staging.ledger(charge_id, merchant, "charge", amount, when, currency="USD", fee=30, source_id=charge_id)


def dispute(staging, dispute_id, charge_id, opened_at, reason="fraudulent"):
    staging.put("oltp", "dispute", ["dispute_id"],
                {"dispute_id": dispute_id, "charge_id": charge_id, "amount": 100, "reason": reason,
                 "status": "needs_response", "opened_at": opened_at, "updated_at": opened_at},
                commit_time=opened_at)


def seed(staging):
    staging.reference_data()
    staging.merchant(1, "low", dt.datetime(2026, 1, 1, tzinfo=UTC), op="S", mcc="7995")
    staging.merchant(1, "high", T0 + dt.timedelta(hours=2))
    for token, cards in (("tok_a", (10, 11)), ("tok_b", (20,))):
        staging.customer(token, 1)
        for card in cards:
            staging.card(card, token)
    minutes = dt.timedelta(minutes=1)
    attempt(staging, 1, "tok_a", 10, T0 - dt.timedelta(days=3), 5000)
    dispute(staging, 900, 1, T0 - dt.timedelta(days=1))     # loaded before the charges below
    attempt(staging, 2, "tok_a", 10, T0 - 50 * minutes, 1200, status="failed")
    attempt(staging, 3, "tok_a", 11, T0 - 10 * minutes, 2500, device="tok_dev_shared")
    attempt(staging, 4, "tok_a", 10, T0, 9000)
    attempt(staging, 5, "tok_b", 20, T0, 700, device="tok_dev_shared")   # same instant as 4
    attempt(staging, 6, "tok_b", 20, T0 + 3 * minutes, 800, device="tok_dev_shared", ip="tok_ip_tok_a")


def features(conn, table=DEFINITIONS.offline_table):
    names = feature_names(DEFINITIONS)
    rows = query(conn, f"SELECT charge_id, {', '.join(names)} FROM features.{table} ORDER BY charge_id")
    return {row[0]: dict(zip(names, row[1:], strict=True)) for row in rows}


def test_features_of_each_charge_use_only_what_came_strictly_before_it(warehouse, staging):
    seed(staging)
    build(warehouse)
    report = build_features(warehouse, DEFINITIONS)
    assert report["charge_events"] == 6 and report["dispute_events"] == 1 and report["feature_rows"] == 6
    got = features(warehouse)
    four = got[4]
    # before charge 4 (T0): charge 1 (3 days earlier), the decline 2 (50 min), charge 3 (10 min)
    assert (four["customer_charges_1h"], four["customer_charges_24h"], four["customer_charges_7d"]) == (2, 2, 3)
    assert four["customer_amount_usd_1h"] == pytest.approx(37.0)
    assert four["customer_declines_24h"] == 1
    assert four["customer_authorised_amount_avg_30d"] == pytest.approx(37.5)   # charges 1 and 3
    assert four["customer_devices_24h"] == 2
    assert four["customer_seconds_since_last_charge"] == pytest.approx(600.0)
    assert four["customer_fraud_disputes_90d"] == 1                             # opened a day before
    assert (four["card_charges_1h"], four["card_declines_1h"], four["card_charges_7d"]) == (1, 1, 2)
    assert four["customer_device_charges_30d"] == 2                              # charges 1 and 2
    assert four["merchant_risk_tier"] == 0 and four["merchant_mcc_high_risk"] == 1
    assert four["hour_of_day"] == 12 and four["amount_usd"] == pytest.approx(90.0)
    # ties: charge 5 happens at the same instant as 4 and neither sees the other
    assert got[5]["device_charges_24h"] == 1 and got[5]["device_cards_24h"] == 1   # only charge 3
    # charge 6, 3 minutes after T0 (before the tier change at T0 + 2h), sees 4 and 5
    assert got[6]["ip_charges_24h"] == 3 and got[6]["ip_cards_24h"] == 2     # 2, 3, 4 (1 is 3 days old)
    assert got[6]["device_cards_24h"] == 2 and got[6]["merchant_risk_tier"] == 0
    first = got[1]
    assert first["customer_charges_7d"] == 0 and math.isnan(first["customer_seconds_since_last_charge"] or math.nan)


def naive_features(conn) -> dict[int, dict[str, float]]:
    """The windowed aggregates recomputed in plain Python from the event ledgers, one charge at a
    time, straight from the rule (event time < T, loaded no later than the charge)."""
    charges = query(conn, "SELECT charge_id, created_at, known_lsn, customer_id, card_fingerprint, device_id, "
                          "ip_address_token, amount_usd, outcome FROM features.charge_event")
    disputes = query(conn, "SELECT opened_at, known_lsn, customer_id, card_fingerprint, is_fraud_reason "
                           "FROM features.dispute_event")
    keys = {"customer": (3,), "card": (4,), "device": (5,), "ip": (6,), "customer_device": (3, 5)}
    dispute_keys = {"customer": (2,), "card": (3,)}
    result = {}
    for charge in charges:
        charge_id, at_, lsn = charge[0], charge[1], charge[2]
        values = {}
        for aggregate in DEFINITIONS.aggregates:
            window = DEFINITIONS.windows[aggregate.window]
            if aggregate.source == "charge_event":
                index = keys[aggregate.entity]
                rows = [c for c in charges if all(c[i] == charge[i] and c[i] is not None for i in index)
                        and at_ - window <= c[1] < at_ and c[2] <= lsn]
                if aggregate.filter:
                    rows = [c for c in rows if c[8] == aggregate.filter]
                column = {"amount_usd": 7, "device_id": 5, "card_fingerprint": 4}.get(aggregate.column)
                times = [c[1] for c in rows]
            else:
                index = dispute_keys[aggregate.entity]
                rows = [d for d in disputes if all(d[i] == charge[j] for i, j in zip(index, keys[aggregate.entity],
                                                                                     strict=True))
                        and at_ - window <= d[0] < at_ and d[1] <= lsn and d[4]]
                column, times = None, [d[0] for d in rows]
            if aggregate.aggregation == "count":
                value = len(rows)
            elif aggregate.aggregation == "sum":
                value = sum(r[column] for r in rows)
            elif aggregate.aggregation == "avg":
                value = sum(r[column] for r in rows) / len(rows) if rows else None
            elif aggregate.aggregation == "count_distinct":
                value = len({r[column] for r in rows})
            else:
                value = (at_ - max(times)).total_seconds() if times else None
            values[aggregate.name] = value
        result[charge_id] = values
    return result


def assert_same(left: dict, right: dict, names) -> None:
    assert left.keys() == right.keys()
    for key in left:
        for name in names:
            a, b = left[key][name], right[key][name]
            if a is None or b is None:
                assert a is None and b is None, (key, name, a, b)
            else:
                assert a == pytest.approx(b), (key, name, a, b)


def test_later_payments_disputes_and_late_loaded_rows_leave_earlier_features_unchanged(warehouse, staging):
    seed(staging)
    build(warehouse)
    build_features(warehouse, DEFINITIONS)
    before = features(warehouse)
    minutes = dt.timedelta(minutes=1)
    attempt(staging, 7, "tok_a", 10, T0 + 30 * minutes, 4000)                  # a later payment
    dispute(staging, 901, 3, T0 + 40 * minutes)                                 # a later dispute
    attempt(staging, 8, "tok_a", 10, T0 - 5 * minutes, 3000, device="tok_dev_shared")   # late, describes the past
    attempt(staging, 9, "tok_b", 20, T0 - 20 * minutes, 600, status="failed")   # late, describes the past
    build(warehouse)
    report = build_features(warehouse, DEFINITIONS)
    assert report["charge_events"] == 3 and report["dispute_events"] == 1 and report["feature_rows"] == 3
    after = features(warehouse)
    assert {key: after[key] for key in before} == before
    # the late row's own features see what was loaded before it (charges 1-6, all earlier in time)
    assert after[8]["customer_charges_1h"] == 2 and after[8]["card_declines_1h"] == 1
    # charge 7 was loaded before 8 (same build, lower position): it sees 3 and 4 in its hour, not 8
    assert after[7]["customer_charges_1h"] == 2
    # a rebuild from the ledgers reproduces every row (first-seen positions are kept)
    build_features(warehouse, DEFINITIONS, rebuild=True)
    assert features(warehouse) == after
    # and so does the plain-Python reference, row for row
    names = [a.name for a in DEFINITIONS.aggregates]
    assert_same(naive_features(warehouse), after, names)


def lateral_features(conn) -> dict[int, dict]:
    """Every ledger charge through the LATERAL builder (the incremental path), whatever its load order."""
    query_sql, params = feature_query(DEFINITIONS)
    names = feature_names(DEFINITIONS)
    with conn.cursor() as cursor:
        cursor.execute(load_sql("warehouse/queries/features/spine_create.sql"))
        cursor.execute(load_sql("warehouse/queries/features/spine_from_charges.sql"), {"from_lsn": -1, "to_lsn": 2**62})
        cursor.execute(query_sql, params)
        rows = cursor.fetchall()
    conn.rollback()
    return {row[0]: dict(zip(names, row[1:], strict=True)) for row in rows}


def late_loaded_history(staging) -> None:
    """After the seed's build: a later payment, a later dispute, and rows loaded late that describe
    the past (charge 8 five minutes before T0, a decline 9 twenty minutes before it, a charge 10 on
    the shared device between them, a fraud dispute 902 on charge 2 opened half an hour before T0),
    each in its own commit."""
    minutes = dt.timedelta(minutes=1)
    attempt(staging, 7, "tok_a", 10, T0 + 30 * minutes, 4000)
    dispute(staging, 901, 3, T0 + 40 * minutes)
    attempt(staging, 8, "tok_a", 10, T0 - 5 * minutes, 3000, device="tok_dev_shared")
    attempt(staging, 9, "tok_b", 20, T0 - 20 * minutes, 600, status="failed")
    attempt(staging, 10, "tok_b", 21, T0 - 7 * minutes, 650, device="tok_dev_shared", ip="tok_ip_tok_a")
    dispute(staging, 902, 2, T0 - 30 * minutes)


@pytest.mark.parametrize("formulation", ["join", "window"])
@pytest.mark.parametrize("late", [False, True], ids=["in-order-loads", "late-loaded-rows"])
def test_set_based_and_lateral_formulations_agree_row_for_row(warehouse, staging, late, formulation):
    seed(staging)
    staging.card(21, "tok_b")
    build(warehouse)
    build_features(warehouse, DEFINITIONS, formulation=formulation)
    if late:
        late_loaded_history(staging)
        build(warehouse)
        build_features(warehouse, DEFINITIONS)
    incremental = features(warehouse)
    report = build_features(warehouse, DEFINITIONS, rebuild=True, formulation=formulation)
    rebuilt = features(warehouse)
    names = feature_names(DEFINITIONS)
    # the full build equals the LATERAL builder over every charge, and the rows built incrementally
    # before the late rows arrived (a rebuild does not let them leak into earlier rows)
    assert_same(rebuilt, lateral_features(warehouse), names)
    assert_same(rebuilt, incremental, names)
    assert_same(naive_features(warehouse), rebuilt, [a.name for a in DEFINITIONS.aggregates])
    charges = 10 if late else 6
    if formulation == "join" or not late:
        # every charge through the set-based query; ties (4 and 5 at T0) included
        assert (report["set_based_rows"], report["lateral_rows"]) == (charges, 0)
    if not late:
        return
    assert rebuilt[4]["customer_charges_1h"] == 2 and rebuilt[4]["device_cards_24h"] == 1
    assert rebuilt[6]["device_cards_24h"] == 2 and rebuilt[6]["ip_cards_24h"] == 2
    # dispute 902 (opened before charge 3, loaded after every charge) is seen by none of them
    assert rebuilt[4]["customer_fraud_disputes_90d"] == 1 and rebuilt[7]["customer_fraud_disputes_90d"] == 1
    if formulation == "join":
        return
    # windows: the charges whose frames hold a row loaded after them go through the LATERAL
    # builder: 4-7 (their customer, card, device or IP windows hold 8, 9 or 10) and 8 (its device
    # window holds 10); 1-3 (older than every late row), 9 and 10 through the windows
    assert (report["set_based_rows"], report["lateral_rows"]) == (5, 5)
    # the flag is necessary and sufficient here: unflagged window rows equal the LATERAL ones, and
    # some flagged row's window values differ (they count a row loaded after the charge)
    query_sql, params = rebuild_query(DEFINITIONS, "window")
    names = rebuild_names(DEFINITIONS)
    rows = query(warehouse, query_sql, dict(params, to_lsn=2**62))
    window = {row[0]: dict(zip(names, row[3:-1], strict=True)) for row in rows}
    flagged = {row[0] for row in rows if row[-1]}
    reference = lateral_features(warehouse)
    assert set(window) == set(reference) and sorted(flagged) == [4, 5, 6, 7, 8]
    assert_same({k: v for k, v in window.items() if k not in flagged},
                {k: v for k, v in reference.items() if k not in flagged}, names)
    assert any(window[key][name] != reference[key][name] for key in flagged for name in names)


def test_full_build_refuses_an_unknown_formulation(warehouse, staging):
    seed(staging)
    build(warehouse)
    with pytest.raises(ValueError, match="formulation"):
        build_features(warehouse, DEFINITIONS, formulation="magic")


def test_training_sets_are_versioned_by_positions_and_labels(warehouse, staging):
    seed(staging)
    build(warehouse)
    build_features(warehouse, DEFINITIONS)
    as_of = T0 + dt.timedelta(days=61)
    first = build_training_set(warehouse, DEFINITIONS, label_as_of=as_of)
    # authorised charges 1, 3, 4, 5, 6 are labelled; 1 has a fraud dispute
    assert (first["row_count"], first["fraud_count"]) == (5, 1)
    assert first["oltp_lsn"] == staging.lsn["oltp"] and first["label_maturity_days"] == 60
    assert build_training_set(warehouse, DEFINITIONS, label_as_of=as_of)["training_set_id"] == \
        first["training_set_id"]
    windowed = build_training_set(warehouse, DEFINITIONS, label_as_of=as_of, window_start=T0)
    assert windowed["row_count"] == 3 and windowed["training_set_id"] != first["training_set_id"]
    frame = load_training_frame(warehouse, DEFINITIONS, first["training_set_id"])
    assert list(frame["charge_id"]) == [1, 3, 4, 5, 6] and frame["is_fraud"].tolist() == [
        True, False, False, False, False]
    assert frame.loc[frame.charge_id == 4, "customer_charges_1h"].item() == 2
    # more data: a new version; the old set's rows and features are unchanged
    attempt(staging, 7, "tok_a", 10, T0 + dt.timedelta(minutes=30), 4000)
    build(warehouse)
    build_features(warehouse, DEFINITIONS)
    second = build_training_set(warehouse, DEFINITIONS, label_as_of=as_of)
    assert second["row_count"] == 6 and second["oltp_lsn"] > first["oltp_lsn"]
    again = load_training_frame(warehouse, DEFINITIONS, first["training_set_id"])
    assert again.equals(frame)


def test_online_documents_equal_the_offline_rows_for_the_same_entity_time_and_position(
        warehouse, staging, mongo_db):
    from ml.features.online import refresh_online

    seed(staging)
    build(warehouse)
    build_features(warehouse, DEFINITIONS)
    offline = features(warehouse)
    (known_4,) = query(warehouse, "SELECT known_lsn FROM features.charge_event WHERE charge_id = 4")[0]
    report = refresh_online(warehouse, DEFINITIONS, mongo_db, as_of=T0, known_lsn=known_4, full=True)
    assert report["per_entity"]["customer"] == 2 and report["per_entity"]["merchant_lookup"] == 1
    documents = {doc["_id"]: doc for doc in mongo_db["features"].find()}
    for entity, key in (("customer", "tok_a"), ("card", "pm:10"), ("device", "tok_dev_tok_a"),
                        ("ip", "tok_ip_tok_a"), ("customer_device", "tok_a|tok_dev_tok_a")):
        values = documents[f"{entity}:{key}"]["values"]
        assert values, entity
        for name, value in values.items():
            expected = offline[4][name]
            assert (value is None and expected is None) or value == pytest.approx(expected), (entity, name)
    lookup = documents["merchant_lookup:1"]["values"]
    assert lookup == {"merchant_risk_tier": offline[4]["merchant_risk_tier"],
                      "merchant_mcc_high_risk": offline[4]["merchant_mcc_high_risk"]}


def test_online_refresh_after_a_load_rewrites_only_the_changed_entities(warehouse, staging, mongo_db):
    from ml.features.online import refresh_online

    seed(staging)
    build(warehouse)
    build_features(warehouse, DEFINITIONS)
    first = refresh_online(warehouse, DEFINITIONS, mongo_db)
    assert first["per_entity"]["customer"] == 2 and first["from_lsn"] == -1
    attempt(staging, 7, "tok_b", 20, T0 + dt.timedelta(minutes=30), 4000)
    build(warehouse)
    build_features(warehouse, DEFINITIONS)
    second = refresh_online(warehouse, DEFINITIONS, mongo_db)
    # one charge of tok_b on card 20 from its usual device and IP: one document per entity
    assert second["from_lsn"] == first["to_lsn"] and second["to_lsn"] > first["to_lsn"]
    assert {k: v for k, v in second["per_entity"].items() if k != "merchant_lookup"} == {
        "customer": 1, "card": 1, "device": 1, "ip": 1, "customer_device": 1}
    document = mongo_db["features"].find_one({"_id": "customer:tok_b"})
    assert document["known_lsn"] == second["to_lsn"] and document["values"]["customer_charges_7d"] == 3
    assert document["expires_at"]["customer_charges_1h"] > document["as_of"]


def test_the_ml_role_builds_features_and_training_sets_of_a_migrated_warehouse_without_ddl(role_warehouse):
    from ml.features.offline import FeaturesNotDefined, ensure_features

    from .conftest import Staging

    owner, loader, ml = role_warehouse.owner, role_warehouse.member("warehouse_loader"), role_warehouse.member("ml")
    seed(Staging(owner))
    build(loader)
    with pytest.raises(FeaturesNotDefined, match="paydata.migrations apply --db warehouse"):
        build_features(ml, DEFINITIONS)  # the migrate step has not created the feature tables yet

    from ml.monitoring.store import ensure_schema as ensure_monitoring
    from ml.scoring.warehouse import ensure_schema as ensure_scores
    from paydata.warehouse.schema import MartsNotDefined

    for ensure in (ensure_scores, ensure_monitoring):
        with pytest.raises(MartsNotDefined, match="paydata.migrations apply --db warehouse"):
            ensure(ml)
        ensure(owner)  # the migrate step
        ensure(ml)  # now only checks
    ensure_features(owner, DEFINITIONS)  # what the migrate step does, as the owner
    report = build_features(ml, DEFINITIONS)
    assert report["charge_events"] == 6 and report["feature_rows"] == 6
    got = features(ml)
    assert (got[4]["customer_charges_1h"], got[4]["customer_charges_7d"]) == (2, 3)
    assert build_features(ml, DEFINITIONS, rebuild=True)["feature_rows"] == 6  # TRUNCATE of its own data
    reference = build_training_set(ml, DEFINITIONS, label_as_of=T0 + dt.timedelta(days=120))
    assert reference["training_set_id"] and len(load_training_frame(ml, DEFINITIONS, reference["training_set_id"])) >= 1
    from ml.registry.gate import record_decision

    decision = {"model_name": "fraud_scoring", "challenger_version": "2", "champion_version": "1",
                "training_set_id": reference["training_set_id"], "run_id": "run-1", "challenger_pr_auc": 0.6,
                "champion_pr_auc": 0.5, "baseline_pr_auc": 0.3, "challenger_brier": 0.01, "champion_brier": 0.01,
                "promoted": True, "reason": "better"}
    decision_id = record_decision(ml, decision)  # fraud_train's gate, as the ml role
    assert query(ml, "SELECT promoted, reason FROM features.model_decision WHERE decision_id = %s",
                 (decision_id,)) == [(True, "better")]
    assert query(owner, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'features'") == [
        ("warehouse_owner",)], "the ml role created nothing"
