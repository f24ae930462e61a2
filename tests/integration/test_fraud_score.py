"""Scores back to the warehouse: ``marts.fct_fraud_score`` written from the real scoring API (served
by uvicorn on a local port) equals the API's answers, is idempotent, the analyst examples answer
what the rows say, and only charges younger than the online horizon are sent (the rest counted)."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

import pytest

from paydata.sql import load_sql

pytestmark = pytest.mark.integration

MODEL = "fraud_scoring"
# The scoring world is months-old generated history, older than the online horizon: these tests
# send all of it on purpose (what they examine is the table against the API's answers), so the
# horizon is widened to cover it. The horizon itself is tested below.
ALL_HISTORY = dt.timedelta(days=3650)


def rows(conn, statement: str, params=None) -> list[tuple]:
    with conn.cursor() as cursor:
        cursor.execute(statement, params)
        found = cursor.fetchall()
    conn.rollback()
    return found


def example(conn, name: str, params: dict) -> list[tuple]:
    return rows(conn, load_sql(f"warehouse/queries/examples/fraud_scores/{name}.sql"), params)


@pytest.fixture
def scored(scoring_world, scoring_app):
    """The world's charges scored into the warehouse by two model versions: the champion, then a
    one-iteration stump made champion (the scorer reloads it); the alias and table are reset after."""
    from mlflow.tracking import MlflowClient

    from ml.scoring.client import ScorerClient
    from ml.scoring.warehouse import score_new_charges
    from ml.serving.sample import ServerThread
    from ml.training.run import train_and_register
    from paydata.warehouse.labels import label_charges

    conn = scoring_world["conn"]
    registry = MlflowClient(scoring_world["tracking_uri"])
    made = scoring_app()
    try:
        with ServerThread(made.app) as base_url:
            client = ScorerClient(base_url, made.key)
            first = score_new_charges(conn, client, page=300, max_age=ALL_HISTORY)
            again = score_new_charges(conn, client, page=300, max_age=ALL_HISTORY)
            stump = train_and_register(conn, scoring_world["training_set_id"], tracking_uri=scoring_world["tracking_uri"],
                                       params={"max_iter": 1, "max_leaf_nodes": 2})
            registry.set_registered_model_alias(MODEL, "champion", stump["model_version"])
            assert made.holder.poll_once() == "loaded"
            rescored = score_new_charges(conn, client, from_lsn=-1, page=300, max_age=ALL_HISTORY)
            yield {"conn": conn, "client": client, "first": first, "again": again, "rescored": rescored,
                   "versions": (scoring_world["model_version"], stump["model_version"]), "made": made,
                   "labels": label_charges(conn, as_of=dt.datetime(2025, 9, 1, tzinfo=dt.UTC) + dt.timedelta(days=100))}
    finally:
        registry.set_registered_model_alias(MODEL, "champion", scoring_world["model_version"])
        made.holder.poll_once()
        with conn.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS marts.fct_fraud_score, marts.fraud_score_state")
        conn.commit()


def test_every_new_charge_is_scored_once_per_model_version_and_reruns_change_nothing(scored):
    conn = scored["conn"]
    (charges,) = rows(conn, "SELECT count(*) FROM marts.fct_charge WHERE NOT is_deleted")[0]
    first, second = scored["versions"]
    assert scored["first"]["scored"] == charges and scored["first"]["model_versions"] == {first: charges}
    assert scored["first"]["skipped_too_old"] == 0
    assert scored["again"]["scored"] == 0 and scored["again"]["from_lsn"] == scored["first"]["to_lsn"]
    assert scored["rescored"]["model_versions"] == {second: charges}
    per_version = dict(rows(conn, "SELECT model_version, count(*) FROM marts.fct_fraud_score GROUP BY 1"))
    assert per_version == {first: charges, second: charges}
    assert rows(conn, "SELECT scored_lsn FROM marts.fraud_score_state")[0][0] == scored["first"]["to_lsn"]


def test_the_table_equals_the_api_answers_for_the_same_charges_and_version(scored):
    from ml.serving.sample import charges

    conn = scored["conn"]
    sample = charges(conn, 25)
    answers = scored["client"].score_batch(sample)
    assert answers["model_version"] == scored["versions"][1]
    stored = {r[0]: r[1:] for r in rows(
        conn, "SELECT charge_id, score, band, reasons FROM marts.fct_fraud_score "
              "WHERE model_version = %s AND charge_id = ANY(%s)", (answers["model_version"],
                                                                  [c["charge_id"] for c in sample]))}
    assert len(stored) == 25
    for answer in answers["results"]:
        score, band, reasons = stored[answer["charge_id"]]
        assert score == pytest.approx(answer["score"], abs=1e-12) and band == answer["band"]
        assert reasons == answer["reasons"]


def test_the_example_queries_answer_what_the_rows_say(scored):
    conn = scored["conn"]
    first, second = scored["versions"]
    facts = rows(conn, "SELECT s.charge_id, s.model_version, s.score, s.band, c.merchant_id, m.risk_tier_code, "
                       "l.is_fraud FROM marts.fct_fraud_score s JOIN marts.fct_charge c USING (charge_id) "
                       "LEFT JOIN marts.dim_merchant m ON m.merchant_version_id = c.merchant_version_id "
                       "LEFT JOIN marts.fct_charge_label l USING (charge_id)")
    of_first = [f for f in facts if f[1] == first]
    # 1. distribution by merchant and tier
    groups = defaultdict(list)
    for _, _, score, band, merchant, tier, _ in of_first:
        groups[(merchant, tier)].append((score, band))
    answer = example(conn, "by_merchant_tier", {"model_name": MODEL, "model_version": first,
                                                             "limit": 1000})
    assert len(answer) == len(groups)
    for merchant, tier, count, mean, _median, _p90, review, decline in answer:
        scores = groups[(merchant, tier)]
        assert count == len(scores) and float(mean) == pytest.approx(sum(s for s, _ in scores) / len(scores), abs=1e-6)
        assert (review, decline) == (sum(b == "review" for _, b in scores), sum(b == "decline" for _, b in scores))
    assert [float(r[3]) for r in answer] == sorted((float(r[3]) for r in answer), reverse=True)
    # 2. lift by band on matured labels
    labelled = [(band, fraud) for _, _, _, band, _, _, fraud in of_first if fraud is not None]
    assert labelled and any(fraud for _, fraud in labelled)
    overall = sum(f for _, f in labelled) / len(labelled)
    lift = example(conn, "lift_by_band", {"model_name": MODEL, "model_version": first})
    counts = Counter(band for band, _ in labelled)
    assert [r[0] for r in lift] == [b for b in ("approve", "review", "decline") if counts[b]]
    for band, count, frauds, rate, band_lift in lift:
        expected = sum(f for b, f in labelled if b == band)
        assert (count, frauds) == (counts[band], expected)
        assert float(rate) == pytest.approx(expected / count, abs=1e-6)
        assert float(band_lift) == pytest.approx((expected / count) / overall, abs=1e-3)
    # the champion ranks fraud: its approve band has the lowest fraud rate
    assert lift[0][0] == "approve" and float(lift[0][3]) == min(float(r[3]) for r in lift)
    # 3. two versions on the same charges
    bands = {v: {f[0]: (f[2], f[3]) for f in facts if f[1] == v} for v in (first, second)}
    moves = Counter((bands[first][c][1], bands[second][c][1]) for c in bands[first])
    compared = example(conn, "model_versions_compared", {"model_name": MODEL, "version_a": first,
                                                           "version_b": second})
    assert {(a, b): n for a, b, n, _ in compared} == dict(moves)
    assert sum(n for _, _, n, _ in compared) == len(bands[first])


@pytest.fixture
def score_at(scoring_world, scoring_app):
    """``score_at(now)``: every charge of the world sent from position -1 with the clock at ``now``
    and the default online horizon; the table and watermark are dropped after."""
    from ml.scoring.client import ScorerClient
    from ml.scoring.warehouse import score_new_charges
    from ml.serving.sample import ServerThread

    conn = scoring_world["conn"]
    made = scoring_app()
    try:
        with ServerThread(made.app) as base_url:
            client = ScorerClient(base_url, made.key)
            yield lambda now: score_new_charges(conn, client, from_lsn=-1, page=300, now=now,
                                                definitions=scoring_world["definitions"])
            client.close()
    finally:
        with conn.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS marts.fct_fraud_score, marts.fraud_score_state")
        conn.commit()


def charge_times(conn) -> list[tuple[int, dt.datetime]]:
    return rows(conn, "SELECT charge_id, created_at FROM marts.fct_charge WHERE NOT is_deleted "
                      "AND created_at IS NOT NULL AND merchant_id IS NOT NULL AND amount IS NOT NULL "
                      "ORDER BY created_at, charge_id")


def test_only_charges_younger_than_the_online_horizon_are_sent_and_the_rest_are_counted(scoring_world, score_at):
    from ml.scoring.warehouse import online_horizon

    conn = scoring_world["conn"]
    horizon = online_horizon(scoring_world["definitions"])
    times = charge_times(conn)
    newest = times[-1][1]
    # the clock is set so that one charge is exactly the horizon old: it is too old, as a value at
    # its expires_at is expired; every later charge is sent
    boundary_id, boundary = next((i, t) for i, t in times if t > newest - horizon)
    now = boundary + horizon
    expected = {i for i, t in times if t > boundary}
    result = score_at(now)
    stored = dict(rows(conn, "SELECT charge_id, charge_created_at FROM marts.fct_fraud_score"))
    assert set(stored) == expected and boundary_id not in stored
    assert 0 < result["scored"] == len(expected) < len(times)
    assert result["skipped_too_old"] == len(times) - len(expected)
    assert result["scored"] + result["skipped_too_old"] == len(times)   # nothing lost
    assert all(now - created < horizon for created in stored.values())
    assert result["online_horizon_seconds"] == horizon.total_seconds() == 3600
    assert dt.datetime.fromisoformat(result["scorable_after"]) == boundary
    # the demo's count of charges without a score is the skipped ones
    assert rows(conn, load_sql("warehouse/queries/scoring/unscored_count.sql"))[0][0] == result["skipped_too_old"]
    # the watermark moves past the skipped charges: they only grow older
    assert rows(conn, "SELECT scored_lsn FROM marts.fraud_score_state")[0][0] == result["to_lsn"]


def test_when_every_charge_is_too_old_nothing_is_sent_and_all_are_counted(scoring_world, score_at):
    from ml.scoring.warehouse import online_horizon

    conn = scoring_world["conn"]
    times = charge_times(conn)
    result = score_at(times[-1][1] + online_horizon(scoring_world["definitions"]))
    assert result["scored"] == 0 and result["model_versions"] == {} and result["bands"] == {}
    assert result["skipped_too_old"] == len(times) > 0
    assert rows(conn, "SELECT count(*) FROM marts.fct_fraud_score")[0][0] == 0
    assert rows(conn, load_sql("warehouse/queries/scoring/unscored_count.sql"))[0][0] == len(times)
    assert rows(conn, "SELECT scored_lsn FROM marts.fraud_score_state")[0][0] == result["to_lsn"]
