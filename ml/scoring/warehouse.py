"""``marts.fct_fraud_score``: the scoring API's answers for the charges the marts loaded.

:func:`score_new_charges` takes the window of charge-fact positions above the recorded watermark
up to the newest (or from an explicit ``from_lsn``, to rescore with the current champion), sends
those charges to the batch endpoint in pages, and upserts each answer on (charge, model name,
model version) in the same transaction that moves the watermark; a failed run leaves nothing
half-written and a rerun sends the same charges again. The scores are the API's answers at
scoring time: the online features it reads are the store's current values (docs/ml.md, *Serving*).

Only charges younger than the **online horizon** are sent: the shortest TTL of the feature
definitions' aggregates (:func:`online_horizon`, one hour for ``fraud_charge``). The online values
describe the windows ending now; for an older charge at least one of them (the 1 h velocity counts
first) describes another window than the one before the charge, so the API's answer would not be
what the model said, or would have said, at the time. Older charges (the first load of a history,
a rescoring from an early position) are skipped and counted (``skipped_too_old``); the watermark
still moves past them, since they only grow older. Monitoring scores every charge without a stored
score itself, from its point-in-time offline features (:mod:`ml.monitoring.scores`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from typing import Any

from ml.features.definitions import Definitions
from ml.registry.gate import MODEL_NAME
from paydata.sql import load_sql

PAGE = 500
log = logging.getLogger(__name__)


def online_horizon(definitions: Definitions) -> dt.timedelta:
    """The age below which a charge is scored through the online store: the shortest TTL of the
    definitions' aggregates (a charge of exactly that age is too old, as a value at its
    ``expires_at`` is expired). Raises ValueError for definitions without aggregates."""
    if not definitions.aggregates:
        raise ValueError(f"definitions {definitions.name!r} have no aggregates: no TTL to bound online scoring")
    return min(aggregate.ttl for aggregate in definitions.aggregates)


def charge_request(row: dict[str, Any]) -> dict[str, Any]:
    """One warehouse charge row (``warehouse/queries/scoring/charges_in_window.sql``) as a ``/v1/score`` request body."""
    return {"charge_id": int(row["charge_id"]), "customer_token": row["customer_id"],
            "card_token": row["card_fingerprint"], "device_token": row["device_id"],
            "ip_token": row["ip_address_token"], "session_token": row["session_id"],
            "merchant_id": int(row["merchant_id"]), "amount": int(row["amount"]), "currency": row["currency_code"],
            "amount_usd": None if row["amount_usd"] is None else float(row["amount_usd"]),
            "card_country": row["card_country_code"], "created_at": row["created_at"].isoformat()}


SCHEMA_TABLES = ("marts.fct_fraud_score", "marts.fraud_score_state")


def ensure_schema(conn) -> None:
    """Create the score tables as the owner (the migrate step); as ``ml``, check they exist."""
    from paydata.warehouse.schema import apply_or_require

    apply_or_require(conn, "warehouse/queries/scoring/schema.sql", SCHEMA_TABLES)


def score_new_charges(conn, client, *, model_name: str = MODEL_NAME, from_lsn: int | None = None,
                      page: int = PAGE, now: dt.datetime | None = None,
                      max_age: dt.timedelta | None = None, definitions: Definitions | None = None) -> dict[str, Any]:
    """Score the window's charges younger than ``max_age`` at ``now`` (default: the clock, and
    :func:`online_horizon` of ``definitions``) through ``client`` (a
    :class:`ml.scoring.client.ScorerClient`); returns counts and positions (XCom-sized), with the
    number of charges skipped as too old."""
    from psycopg2.extras import execute_values

    if now is not None and now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    if max_age is None:
        from ml.features.definitions import load_definitions

        max_age = online_horizon(definitions or load_definitions())
    if max_age <= dt.timedelta(0):
        raise ValueError(f"max_age must be positive, got {max_age!r}")
    scorable_after = (now or dt.datetime.now(dt.UTC)) - max_age
    ensure_schema(conn)
    bands: Counter = Counter()
    versions: Counter = Counter()
    degraded = misses = too_old = 0
    try:
        with conn.cursor() as cursor:
            cursor.execute(load_sql("warehouse/queries/scoring/lock.sql"))
            cursor.execute(load_sql("warehouse/queries/scoring/state_select.sql"), {"model_name": model_name})
            stored = cursor.fetchone()
            start = from_lsn if from_lsn is not None else (stored[0] if stored else -1)
            cursor.execute(load_sql("warehouse/queries/scoring/charge_fact_position.sql"))
            (end,) = cursor.fetchone()
        with conn.cursor(name="charges_to_score") as charges:
            charges.itersize = page
            charges.execute(load_sql("warehouse/queries/scoring/charges_in_window.sql"), {"from_lsn": start, "to_lsn": end})
            columns = None
            while rows := charges.fetchmany(page):
                columns = columns or [c.name for c in charges.description]
                fresh = [record for record in (dict(zip(columns, row, strict=True)) for row in rows)
                         if record["created_at"] > scorable_after]
                too_old += len(rows) - len(fresh)
                if not fresh:
                    continue
                requests = [charge_request(record) for record in fresh]
                created = {r["charge_id"]: r["created_at"] for r in requests}
                answer = client.score_batch(requests)
                scored_at = now or dt.datetime.now(dt.UTC)
                values = []
                for result in answer["results"]:
                    values.append((result["charge_id"], model_name, result["model_version"], result["score"],
                                   result["band"], result["reasons"], result["feature_misses"],
                                   result["features_degraded"], created[result["charge_id"]], scored_at))
                    bands[result["band"]] += 1
                    versions[result["model_version"]] += 1
                    degraded += bool(result["features_degraded"])
                    misses += bool(result["feature_misses"])
                with conn.cursor() as writer:
                    execute_values(writer, load_sql("warehouse/queries/scoring/score_upsert.sql"), values, page_size=page)
        with conn.cursor() as cursor:
            cursor.execute(load_sql("warehouse/queries/scoring/state_upsert.sql"),
                           {"model_name": model_name, "scored_lsn": end, "updated_at": now or dt.datetime.now(dt.UTC)})
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    if too_old:
        log.info("skipped %d charges created at or before %s: older than the online horizon %s, their online "
                 "features describe other windows (monitoring scores them from the offline features)",
                 too_old, scorable_after.isoformat(), max_age)
    return {"from_lsn": start, "to_lsn": end, "scored": sum(bands.values()), "bands": dict(sorted(bands.items())),
            "model_versions": dict(sorted(versions.items())), "with_feature_misses": misses,
            "features_degraded": degraded, "skipped_too_old": too_old,
            "online_horizon_seconds": max_age.total_seconds(), "scorable_after": scorable_after.isoformat()}
