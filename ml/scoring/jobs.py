"""The ``fraud_score`` DAG's step as a plain function (connections from ``paydata.settings``).

The warehouse connection is the ``ml`` role's (``paydata_warehouse_ml``), never its owner's.
"""

from __future__ import annotations

from typing import Any


def score_charges(params: dict[str, Any]) -> dict[str, Any]:
    """Send the charge facts loaded since the last run (or since ``params["from_lsn"]``) to the
    scoring API and upsert the answers into ``marts.fct_fraud_score``; returns counts and positions."""
    from ml.scoring.client import ScorerClient
    from ml.scoring.warehouse import score_new_charges
    from paydata import settings

    from_lsn = params.get("from_lsn")
    client = ScorerClient.from_connection()
    conn = settings.pg_connect(settings.WAREHOUSE_ML_CONN_ID)
    try:
        return score_new_charges(conn, client, from_lsn=None if from_lsn is None else int(from_lsn))
    finally:
        conn.close()
        client.close()
