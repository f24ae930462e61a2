-- actor and occurred_at are stamped by the audit_log trigger.
INSERT INTO audit_log (action, subject_table, subject_id, reason, detail)
VALUES (%(action)s, %(subject_table)s, %(subject_id)s, %(reason)s, %(detail)s)
RETURNING audit_log_id;
