-- Every audit row in chain order with its canonical text, recomputed here rather than trusted to
-- the database's audit_row_hash(): the same fields, '|'-separated, NULL as '', time in UTC to the
-- microsecond, detail as jsonb text. The verifier appends '|' and the hex of the previous hash.
SELECT chain_position, audit_log_id, prev_hash, row_hash,
       concat_ws('|',
           chain_position::text, audit_log_id::text, actor, action, subject_table,
           coalesce(subject_id::text, ''), coalesce(reason, ''), detail::text,
           to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')) AS canonical
FROM audit_log
ORDER BY chain_position, audit_log_id;
