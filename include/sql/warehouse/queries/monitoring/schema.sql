-- The monitoring results of the fraud model (ml.monitoring.store): one row per monitoring pass in
-- ml.monitoring_run (the model watched, the windows, the decision and its evidence) and one row per
-- number in ml.monitoring (window, metric, segment, value, threshold, status). Idempotent.
CREATE SCHEMA IF NOT EXISTS ml;

CREATE TABLE IF NOT EXISTS ml.monitoring_run (
    monitoring_run_id bigserial   PRIMARY KEY,
    model_name        text        NOT NULL,
    model_version     text,                      -- NULL when there was no champion to watch
    as_of             timestamptz NOT NULL,
    current_start     timestamptz NOT NULL,
    current_end       timestamptz NOT NULL,
    reference_start   timestamptz,
    reference_end     timestamptz,
    matured_start     timestamptz NOT NULL,
    matured_end       timestamptz NOT NULL,
    alert             boolean     NOT NULL,
    decision          text        NOT NULL CHECK (decision IN ('none', 'retrain', 'cooldown', 'insufficient_data')),
    reason            text        NOT NULL,
    evidence          jsonb       NOT NULL,
    mlflow_run_id     text,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
-- a rerun of the same pass replaces its rows
CREATE UNIQUE INDEX IF NOT EXISTS monitoring_run_pass_uq
    ON ml.monitoring_run (model_name, coalesce(model_version, ''), as_of);

CREATE TABLE IF NOT EXISTS ml.monitoring (
    monitoring_run_id bigint           NOT NULL REFERENCES ml.monitoring_run ON DELETE CASCADE,
    window_start      timestamptz      NOT NULL,
    window_end        timestamptz      NOT NULL,
    check_name        text             NOT NULL,  -- feature_drift, prediction_drift, performance
    metric            text             NOT NULL,  -- e.g. amount_usd, drift_share, score, pr_auc
    method            text,                       -- wasserstein, jensenshannon, psi_quantile, average_precision
    segment           text             NOT NULL,  -- 'all', 'merchant_country=DE', 'merchant_risk_tier=high'
    value             double precision,           -- NULL when there was too little data
    threshold         double precision,
    status            text             NOT NULL CHECK (status IN ('ok', 'drift', 'drop', 'insufficient_data')),
    row_count         bigint,
    fraud_count       bigint,
    PRIMARY KEY (monitoring_run_id, check_name, metric, segment, window_start)
);
CREATE INDEX IF NOT EXISTS monitoring_metric_idx ON ml.monitoring (check_name, metric, window_start);
