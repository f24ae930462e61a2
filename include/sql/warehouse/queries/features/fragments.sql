-- Fragments the SQL builder (ml.features.sql_builder) composes from the definitions; braces are
-- filled with identifiers and bound-parameter placeholders, never with values.
-- fragment: count
count(*) FILTER (WHERE {condition})
-- fragment: sum
coalesce(sum(e.{column}) FILTER (WHERE {condition}), 0)
-- fragment: avg
avg(e.{column}) FILTER (WHERE {condition})
-- fragment: count_distinct
count(DISTINCT e.{column}) FILTER (WHERE {condition})
-- fragment: seconds_since_last
extract(epoch FROM s.as_of - max(e.{timestamp}) FILTER (WHERE {condition}))::double precision
-- fragment: in_window
e.{timestamp} >= s.as_of - {window}
-- fragment: filter_declined
e.outcome = 'declined'
-- fragment: filter_authorised
e.outcome = 'authorised'
-- fragment: filter_fraud_dispute
e.is_fraud_reason
-- fragment: entity_lateral
LEFT JOIN LATERAL (
    SELECT {aggregates}
    FROM {source} AS e
    WHERE {entity_match}
      AND e.{timestamp} >= s.as_of - {max_window}
      AND e.{timestamp} < s.as_of
      AND e.known_lsn <= s.known_lsn
) AS {alias} ON true
-- fragment: merchant_lateral
LEFT JOIN LATERAL (
    SELECT m.risk_tier_code, m.mcc
    FROM marts.dim_merchant AS m
    WHERE m.merchant_id = s.merchant_id
      AND m.valid_from < s.as_of
      AND s.as_of <= m.valid_to
    ORDER BY m.valid_from DESC, m.version_number DESC
    LIMIT 1
) AS {alias} ON true
-- fragment: lookup_encoded
coalesce((({encoding})::jsonb ->> {alias}.{column}::text)::double precision, {default})
-- fragment: request_hour_utc
extract(hour FROM s.as_of AT TIME ZONE 'UTC')::double precision
-- fragment: query
SELECT s.spine_id, {columns}
FROM feature_spine AS s
{joins}
