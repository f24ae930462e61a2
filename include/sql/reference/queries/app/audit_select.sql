SELECT audit_log_id, actor, action, subject_table, subject_id, reason, detail, occurred_at
FROM audit_log
WHERE (%(subject_table)s::text IS NULL OR subject_table = %(subject_table)s)
  AND (%(subject_id)s::bigint IS NULL OR subject_id = %(subject_id)s)
ORDER BY audit_log_id;
