"""The champion and its fraud scores: the one place monitoring gets scores from.

:func:`load_champion` loads the model under the monitored alias from the MLflow registry with
what monitoring needs about it (version, training run, training set, held-out PR-AUC).
:func:`fraud_scores` returns the champion's probability of fraud for each row of a feature frame:
the scores stored in the warehouse table named in the settings (``marts.fct_fraud_score``, written
by the online scorer) when the table exists and holds that version's score of a charge, sent within
the online horizon of the charge (:func:`ml.scoring.warehouse.online_horizon`), and for every other
charge the champion's own prediction on its point-in-time features, computed here. A missing score
is expected, not a fault: ``fraud_score`` skips charges too old for the online store (a history
loaded at once), and a score sent later than the horizon (written before that rule) is not read,
since its online features described other windows than the charge's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from psycopg2 import sql

from ml.features.definitions import Definitions
from ml.monitoring.config import MonitoringConfig
from ml.scoring.warehouse import online_horizon
from ml.training.data import add_derived
from paydata.sql import load_sql


class NoChampionError(LookupError):
    """The registered model has no version under the monitored alias yet."""


@dataclass
class Champion:
    name: str
    version: str
    run_id: str
    model: Any
    columns: list[str]
    training_set_id: int | None
    held_out_pr_auc: float | None


def load_champion(config: MonitoringConfig, tracking_uri: str | None = None) -> Champion:
    """The model under ``config.alias`` (raises NoChampionError when there is none)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from paydata import settings

    uri = tracking_uri or settings.mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    try:
        version = client.get_model_version_by_alias(config.model_name, config.alias)
    except MlflowException as exc:
        raise NoChampionError(f"{config.model_name} has no {config.alias!r} version yet") from exc
    model = mlflow.sklearn.load_model(f"models:/{config.model_name}/{version.version}")
    run = client.get_run(version.run_id)
    training_set = run.data.params.get("data.training_set_id")
    return Champion(config.model_name, str(version.version), version.run_id, model,
                    list(getattr(model, "feature_names_in_", [])),
                    int(training_set) if training_set else None, run.data.metrics.get("model.pr_auc"))


def model_inputs(frame: pd.DataFrame, definitions: Definitions, columns: list[str]) -> pd.DataFrame:
    """The champion's inputs (its own columns, derived features added) from stored feature rows;
    raises ValueError naming the columns the frame cannot provide."""
    derived = add_derived(frame, definitions)
    missing = [c for c in columns if c not in derived.columns]
    if missing:
        raise ValueError(f"the champion needs inputs {missing} that the feature rows lack")
    return derived.loc[:, columns].astype("float64")


def _stored(conn, config: MonitoringConfig, version: str, charge_ids: list[int],
            max_age: dt.timedelta) -> dict[int, float]:
    names = config.scores
    try:
        with conn.cursor() as cursor:
            cursor.execute(load_sql("warehouse/queries/monitoring/table_exists.sql"), {"table": names["table"]})
            if not cursor.fetchone()[0]:
                return {}
            schema, _, table = names["table"].rpartition(".")
            cursor.execute(sql.SQL(load_sql("warehouse/queries/monitoring/stored_scores.sql")).format(
                table=sql.Identifier(*([schema] if schema else []), table),
                charge_column=sql.Identifier(names["charge_column"]),
                score_column=sql.Identifier(names["score_column"]),
                version_column=sql.Identifier(names["version_column"]),
                created_column=sql.Identifier(names["created_column"]),
                scored_column=sql.Identifier(names["scored_column"])),
                {"model_version": version, "charge_ids": [int(c) for c in charge_ids], "max_age": max_age})
            return {int(charge): float(score) for charge, score in cursor.fetchall() if score is not None}
    finally:
        conn.rollback()


def fraud_scores(conn, champion: Champion, frame: pd.DataFrame, definitions: Definitions,
                 config: MonitoringConfig) -> tuple[np.ndarray, int]:
    """(scores in the order of ``frame``, how many came from the stored table)."""
    if frame.empty:
        return np.empty(0), 0
    stored = (_stored(conn, config, champion.version, frame["charge_id"].tolist(), online_horizon(definitions))
              if conn is not None else {})
    scores = frame["charge_id"].map(stored).to_numpy(dtype=float)
    todo = np.isnan(scores)
    if todo.any():
        inputs = model_inputs(frame.loc[todo], definitions, champion.columns)
        scores[todo] = champion.model.predict_proba(inputs)[:, 1]
    return scores, int((~todo).sum())
