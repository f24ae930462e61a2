-- Fraud labels of authorised charges as known at %(as_of)s, into the temp table charge_label.
--
-- A charge is fraud when a dispute with a fraud reason (%(fraud_reasons)s) is opened on it within
-- the maturity window [created_at, created_at + %(maturity)s). Its label matures at the end of that
-- window: before then a fraud dispute may still come, so a younger charge is unlabelled (is_fraud
-- NULL) rather than "not fraud", and training and evaluation leave it out. Exactly at the end
-- (label_matured_at = as_of) the window is over and the charge is labelled.
--
-- Only what was known at as_of counts: charges created before it, disputes opened before it, and
-- only staging rows the marts were built from (at or below the oltp watermark), so labels agree
-- with the fact they join. Declined and pending attempts get no label: no money moved, so no
-- dispute can come (card-testing declines are fraud that is never disputed; "false" would be wrong).
CREATE TEMP TABLE charge_label ON COMMIT DROP AS
WITH oltp_watermark AS (
    SELECT coalesce(max(commit_lsn), 0) AS commit_lsn, coalesce(max(index_in_txn), -1) AS index_in_txn
    FROM marts.build_state
    WHERE source = 'oltp'
),

labelled_charge AS (
    SELECT c.charge_id, c.created_at, c.created_at + %(maturity)s::interval AS label_matured_at
    FROM marts.fct_charge AS c
    WHERE NOT c.is_deleted
      AND c.outcome = 'authorised'
      AND c.created_at < %(as_of)s
),

-- the first fraud dispute of the window known at as_of names the label
fraud_dispute AS (
    SELECT DISTINCT ON (d.charge_id) d.charge_id, d.dispute_id, d.reason, d.opened_at
    FROM staging.oltp_dispute AS d
    JOIN labelled_charge AS lc USING (charge_id)
    CROSS JOIN oltp_watermark AS w
    WHERE NOT d._is_deleted
      AND d.reason = ANY (%(fraud_reasons)s)
      AND d.opened_at < %(as_of)s
      AND d.opened_at < lc.label_matured_at
      AND (d._commit_lsn, d._index_in_txn) <= (w.commit_lsn, w.index_in_txn)
    ORDER BY d.charge_id, d.opened_at, d.dispute_id
)

SELECT lc.charge_id, lc.created_at AS charge_created_at, lc.label_matured_at,
       CASE WHEN lc.label_matured_at <= %(as_of)s THEN fd.charge_id IS NOT NULL END AS is_fraud,
       fd.dispute_id, fd.reason AS dispute_reason, fd.opened_at AS dispute_opened_at
FROM labelled_charge AS lc
LEFT JOIN fraud_dispute AS fd USING (charge_id);

CREATE UNIQUE INDEX ON charge_label (charge_id);
ANALYZE charge_label;
