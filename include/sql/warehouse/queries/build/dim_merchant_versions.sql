-- SCD2 versions of every merchant with a history row in the window, rebuilt from its whole
-- history. Versions follow source commit order (_commit_lsn, _index_in_txn), never updated_at.
-- A new version starts when a tracked attribute (risk tier, MCC, payout schedule) changes or the
-- row is deleted; other attributes are type 1 (latest known value on every version).
CREATE TEMP TABLE rebuilt_merchant_version ON COMMIT DROP AS
WITH window_history AS (
    SELECT DISTINCT h.merchant_id
    FROM staging.reference_merchant_history AS h
    WHERE (h._commit_lsn, h._index_in_txn) > (%(reference_from_lsn)s, %(reference_from_idx)s)
      AND (h._commit_lsn, h._index_in_txn) <= (%(reference_to_lsn)s, %(reference_to_idx)s)
),

merchant_history AS (
    SELECT h.*, h._op IN ('D', 'T') AS is_deleted
    FROM staging.reference_merchant_history AS h
    JOIN window_history USING (merchant_id)
    WHERE (h._commit_lsn, h._index_in_txn) <= (%(reference_to_lsn)s, %(reference_to_idx)s)
),

-- a delete may carry only the key: it keeps the tracked values of the row before it
tracked_history AS (
    SELECT merchant_id, _commit_lsn, _index_in_txn, _commit_time, _loaded_at, is_deleted,
           coalesce(risk_tier_code, lag(risk_tier_code) OVER by_position) AS risk_tier_code,
           coalesce(mcc, lag(mcc) OVER by_position) AS mcc,
           coalesce(payout_schedule, lag(payout_schedule) OVER by_position) AS payout_schedule
    FROM merchant_history
    WINDOW by_position AS (PARTITION BY merchant_id ORDER BY _commit_lsn, _index_in_txn)
),

version_boundary AS (
    SELECT *,
           (lag(ROW(risk_tier_code, mcc, payout_schedule, is_deleted)) OVER by_position)
               IS DISTINCT FROM ROW(risk_tier_code, mcc, payout_schedule, is_deleted) AS starts_version
    FROM tracked_history
    WINDOW by_position AS (PARTITION BY merchant_id ORDER BY _commit_lsn, _index_in_txn)
),

numbered_history AS (
    SELECT *,
           sum(starts_version::int) OVER (
               PARTITION BY merchant_id ORDER BY _commit_lsn, _index_in_txn
           )::int AS version_number
    FROM version_boundary
),

version_start AS (
    SELECT merchant_id, version_number, risk_tier_code, mcc, payout_schedule, is_deleted,
           _commit_lsn, _index_in_txn, coalesce(_commit_time, _loaded_at) AS commit_at
    FROM numbered_history
    WHERE starts_version
),

latest_attributes AS (
    SELECT DISTINCT ON (merchant_id)
           merchant_id, legal_name, country_code, default_currency_code, status
    FROM merchant_history
    WHERE NOT is_deleted
    ORDER BY merchant_id, _commit_lsn DESC, _index_in_txn DESC
),

-- the first version also covers time before capture: payments can predate the snapshot
version_validity AS (
    SELECT *,
           CASE WHEN version_number = 1 THEN '-infinity'::timestamptz ELSE commit_at END AS valid_from,
           lead(commit_at) OVER by_version AS next_commit_at
    FROM version_start
    WINDOW by_version AS (PARTITION BY merchant_id ORDER BY version_number)
)

SELECT hashtextextended(v.merchant_id::text || ':' || v.version_number::text, 0) AS merchant_version_id,
       v.merchant_id, v.version_number, a.legal_name, v.mcc, a.country_code, a.default_currency_code,
       v.payout_schedule, v.risk_tier_code, a.status,
       v.valid_from,
       CASE WHEN v.next_commit_at IS NULL THEN 'infinity'::timestamptz
            ELSE greatest(v.next_commit_at, v.valid_from) END AS valid_to,
       v.next_commit_at IS NULL AS is_current,
       v.is_deleted,
       false AS is_inferred,
       v._commit_lsn AS source_commit_lsn,
       v._index_in_txn AS source_index_in_txn,
       v.commit_at AS source_commit_at
FROM version_validity AS v
LEFT JOIN latest_attributes AS a USING (merchant_id)
