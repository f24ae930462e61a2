-- Erasures whose window has not been proven closed yet (no erasure_completed row), oldest first.
SELECT e.audit_log_id, e.subject_id, e.occurred_at, e.detail
FROM audit_log AS e
WHERE e.action = 'customer_erased'
  AND NOT EXISTS (
      SELECT 1 FROM audit_log AS c
      WHERE c.action = 'erasure_completed' AND c.subject_table = 'customer'
        AND c.subject_id = e.subject_id
  )
ORDER BY e.occurred_at, e.audit_log_id
LIMIT %(limit)s;
