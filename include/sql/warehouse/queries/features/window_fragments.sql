-- Fragments of the full-rebuild formulation (ml.features.window_builder): one sorted pass per
-- entity with RANGE frames from the window's length before the row to one microsecond before it:
-- strictly before (timestamps have microsecond resolution, so an event at the same instant is
-- outside), an event at exactly T - window inside, as in the LATERAL builder. Windows are bound as
-- intervals of microseconds only, so each frame bound is one integer subtraction (no calendar
-- arithmetic). Braces take identifiers and placeholders only.
-- fragment: count
count(*) FILTER (WHERE {condition}) OVER {frame}
-- fragment: sum
coalesce(sum(e.{column}) FILTER (WHERE {condition}) OVER {frame}, 0)
-- fragment: avg
avg(e.{column}) FILTER (WHERE {condition}) OVER {frame}
-- fragment: seconds_since_last
extract(epoch FROM e.ts - max(e.ts) FILTER (WHERE {condition}) OVER {frame})::double precision
-- fragment: source_is
e.src = {source}
-- fragment: later_load
coalesce(max(e.known_lsn) FILTER (WHERE e.src = {source}) OVER {frame} > e.known_lsn, false)
-- fragment: frame
{name} AS (PARTITION BY {partition} ORDER BY e.ts
           RANGE BETWEEN {window} PRECEDING AND '1 microsecond'::interval PRECEDING)
-- fragment: source_events
SELECT {source_index} AS src, {charge_id} AS charge_id, e.{timestamp} AS ts, e.known_lsn, {columns}
FROM {source} AS e
WHERE {not_null} AND e.known_lsn <= %(to_lsn)s
-- fragment: entity_pass
SELECT w.charge_id, {outputs}
FROM (
    SELECT e.src, e.charge_id, {aggregates}
    FROM ({events}) AS e
    WINDOW {frames}
) AS w
WHERE w.charge_id IS NOT NULL
-- fragment: bounded_join
SELECT s.spine_id AS charge_id, {aggregates}
FROM ({spine}) AS s
JOIN {source} AS e
  ON {entity_match}
 AND e.{timestamp} >= s.as_of - {max_window}
 AND e.{timestamp} < s.as_of
 AND e.known_lsn <= s.known_lsn
GROUP BY s.spine_id, s.as_of
-- fragment: ledger_spine
SELECT charge_id AS spine_id, created_at AS as_of, known_lsn, customer_id, card_fingerprint, device_id,
       ip_address_token, merchant_id, session_id, card_country_code, amount_usd
FROM features.charge_event
WHERE known_lsn <= %(to_lsn)s
-- fragment: pass_join
LEFT JOIN ({query}) AS {alias} ON {alias}.charge_id = s.spine_id
-- fragment: query
SELECT s.spine_id, s.as_of, s.known_lsn, {columns},
       {later_load} AS later_load
FROM ({spine}) AS s
{joins}
-- fragment: merchant_join
LEFT JOIN (
    SELECT DISTINCT ON (s.spine_id) s.spine_id, m.risk_tier_code, m.mcc
    FROM ({spine}) AS s
    JOIN marts.dim_merchant AS m
      ON m.merchant_id = s.merchant_id
     AND m.valid_from < s.as_of
     AND s.as_of <= m.valid_to
    ORDER BY s.spine_id, m.valid_from DESC, m.version_number DESC
) AS {alias} ON {alias}.spine_id = s.spine_id
