"""``marts.fct_fraud_score``: the scoring API's answers for the charges the marts loaded.

:func:`score_new_charges` takes the window of charge-fact positions above the recorded watermark
up to the newest (or from an explicit ``from_lsn``, to rescore with the current champion), sends
those charges to the batch endpoint in pages, and upserts each answer on (charge, model name,
model version) in the same transaction that moves the watermark; a failed run leaves nothing
half-written and a rerun sends the same charges again. The scores are the API's answers at
scoring time: the online features it reads are the store's current values (docs/ml.md, *Serving*).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from ml.registry.gate import MODEL_NAME
from paydata.sql import load_sql

PAGE = 500


def charge_request(row: dict[str, Any]) -> dict[str, Any]:
    """One warehouse charge row (``scoring/charges_in_window.sql``) as a ``/v1/score`` request body."""
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

    apply_or_require(conn, "scoring/schema.sql", SCHEMA_TABLES)


def score_new_charges(conn, client, *, model_name: str = MODEL_NAME, from_lsn: int | None = None,
                      page: int = PAGE, now: dt.datetime | None = None) -> dict[str, Any]:
    """Score the window's charges through ``client`` (a :class:`ml.scoring.client.ScorerClient`);
    returns counts and positions (XCom-sized)."""
    from psycopg2.extras import execute_values

    ensure_schema(conn)
    bands: Counter = Counter()
    versions: Counter = Counter()
    degraded = misses = 0
    try:
        with conn.cursor() as cursor:
            cursor.execute(load_sql("scoring/lock.sql"))
            cursor.execute(load_sql("scoring/state_select.sql"), {"model_name": model_name})
            stored = cursor.fetchone()
            start = from_lsn if from_lsn is not None else (stored[0] if stored else -1)
            cursor.execute(load_sql("scoring/charge_fact_position.sql"))
            (end,) = cursor.fetchone()
        with conn.cursor(name="charges_to_score") as charges:
            charges.itersize = page
            charges.execute(load_sql("scoring/charges_in_window.sql"), {"from_lsn": start, "to_lsn": end})
            columns = None
            while rows := charges.fetchmany(page):
                columns = columns or [c.name for c in charges.description]
                requests = [charge_request(dict(zip(columns, row, strict=True))) for row in rows]
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
                    execute_values(writer, load_sql("scoring/score_upsert.sql"), values, page_size=page)
        with conn.cursor() as cursor:
            cursor.execute(load_sql("scoring/state_upsert.sql"),
                           {"model_name": model_name, "scored_lsn": end, "updated_at": now or dt.datetime.now(dt.UTC)})
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return {"from_lsn": start, "to_lsn": end, "scored": sum(bands.values()), "bands": dict(sorted(bands.items())),
            "model_versions": dict(sorted(versions.items())), "with_feature_misses": misses,
            "features_degraded": degraded}
