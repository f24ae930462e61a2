-- Through the SECURITY DEFINER function: the caller has no INSERT on audit_log. The trigger
-- stamps actor and occurred_at, checks the subject exists and links the row into the hash chain.
SELECT audit_append(%(action)s, %(subject_table)s, %(subject_id)s, %(reason)s, %(detail)s);
